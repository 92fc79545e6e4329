"""The speed paths of keel.genai.model agree with the plain ones: the chunked training loss and NumPy decoding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from keel.genai.model import GPT, KVCache, blas_threads, decode_step, head_loss, pack_for_decoding  # noqa: E402

from ._lm_fixtures import TINY  # noqa: E402


def test_head_loss_equals_cross_entropy_on_full_logits_with_the_same_gradients() -> None:
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(40, 16, requires_grad=True)
    t = torch.randint(0, 40, (50,))
    reference = F.cross_entropy(F.linear(h, w), t)
    gh, gw = torch.autograd.grad(3 * reference, (h, w))
    loss = head_loss(h, w, t, rows=7)  # 7 rows per chunk: the last chunk is partial
    fh, fw = torch.autograd.grad(3 * loss, (h, w))
    assert torch.allclose(loss, reference, rtol=1e-6, atol=1e-6)
    assert torch.allclose(fh, gh, atol=1e-6) and torch.allclose(fw, gw, atol=1e-6)


def test_gpt_loss_matches_forward_and_skips_a_frozen_embedding() -> None:
    torch.manual_seed(1)
    model = GPT(TINY).train()
    xy = torch.randint(0, TINY.vocab_size, (2, 33))
    reference = F.cross_entropy(model(xy[:, :-1]).reshape(-1, TINY.vocab_size), xy[:, 1:].reshape(-1))
    assert abs(float(model.loss(xy[:, :-1], xy[:, 1:]).detach()) - float(reference.detach())) < 1e-5
    model.tok_emb.weight.requires_grad_(False)  # as under LoRA: the tied head gets no gradient
    model.loss(xy[:, :-1], xy[:, 1:]).backward()
    assert model.tok_emb.weight.grad is None and model.blocks[0].attn.qkv.weight.grad is not None


def test_numpy_decoding_fills_the_same_cache_as_the_forward_pass() -> None:
    torch.manual_seed(2)
    model = GPT(TINY).eval()
    ids = torch.randint(0, TINY.vocab_size, (1, 12))
    with torch.no_grad(), blas_threads(1):
        reference = KVCache(TINY)
        full = model(ids, reference)[0]
        cache = KVCache(TINY)
        model(ids[:, :3], cache)
        packed = pack_for_decoding(model)
        steps = [decode_step(model, int(t), cache, packed) for t in ids[0, 3:]]
    assert cache.length == reference.length == 12
    assert torch.allclose(cache.kv, reference.kv, atol=1e-5)
    assert torch.allclose(torch.stack(steps), full[3:], atol=1e-5)
