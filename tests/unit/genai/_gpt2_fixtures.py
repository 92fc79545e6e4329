"""A tiny transformers GPT-2 checkpoint on disk, for the checkpoint-conversion tests (built here, never
downloaded; needs torch, transformers and tokenizers)."""

from __future__ import annotations

from pathlib import Path

TEXTS = [f"def add_{i}(x, y):\n    return x + y * {i % 7}\n\nclass Point{i}: pass  # naïve 🙂\n" for i in range(60)]


def save_tiny_gpt2(path: Path, *, seed: int = 0) -> Path:
    """A tiny GPT-2 built from a config (never downloaded) and a byte-level BPE trained here, saved as
    transformers saves them (safetensors), into `path`."""
    import tokenizers
    import torch
    import transformers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=320, min_frequency=2, special_tokens=["<|endoftext|>"])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    eot = fast.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=len(fast), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=eot, eos_token_id=eot
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # larger weights than the init's, so the test sees differences the init would hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path
