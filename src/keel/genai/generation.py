"""Generate text from a TrainedLM: whole (`generate`) or as it is produced (`stream`), same tokens for a seed.

One loop does both: `generate` joins what `stream` yields, so under the same seed the pieces concatenate
to exactly `generate(...).text`. Tokens are turned into text by an incremental UTF-8 decoder, so a
character split across tokens (an emoji is often 2-4 byte tokens) is held back until complete and never
emitted half-way; invalid bytes a model may produce become U+FFFD. With stop sequences, the last
``len(longest stop) - 1`` characters are held back until they cannot begin a stop sequence, so no piece
ever contains text that is later cut.

The prompt is ``<|bos|> + tokens``; only its last block_size tokens are kept (`prompt_truncated`). A KV
cache makes each new token cost one position; when the cache is full the newest half of the context is
re-encoded and generation continues (positions are learned up to block_size, so the window slides).
<|bos|> and <|pad|> are never sampled; <|eos|> ends the generation (finish_reason 'eos').
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from keel.errors import InvalidInputError
from keel.genai.lm import FinishReason, Generation, TrainedLM
from keel.genai.model import GPT, KVCache, blas_threads, decode_step, pack_for_decoding

__all__ = ["generate", "stream", "stream_generation"]


def generate(
    lm: TrainedLM,
    prompt: str,
    *,
    max_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] | str = (),
    seed: int | None = None,
    device: str = "cpu",
    threads: int | None = 1,
) -> Generation:
    """Complete `prompt` with up to `max_tokens` tokens; greedy when temperature is 0.

    `threads` sets torch's thread count while generating (restored after; None leaves it).
    Raises InvalidInputError for unusable sampling parameters.
    """
    run = _Run(lm, prompt, max_tokens, temperature, top_k, top_p, stop, seed, device, threads)
    return run.generation("".join(run.pieces()))


def stream(
    lm: TrainedLM,
    prompt: str,
    *,
    max_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] | str = (),
    seed: int | None = None,
    device: str = "cpu",
    threads: int | None = 1,
) -> Iterator[str]:
    """Yield the completion's text in pieces (never a split character); joined, they equal generate()'s text."""
    yield from _Run(lm, prompt, max_tokens, temperature, top_k, top_p, stop, seed, device, threads).pieces()


def stream_generation(
    lm: TrainedLM,
    prompt: str,
    *,
    max_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] | str = (),
    seed: int | None = None,
    device: str = "cpu",
    threads: int | None = 1,
) -> Iterator[str | Generation]:
    """stream()'s pieces, then the whole Generation (its text: the pieces joined) as the last item, so a
    server can send the tokens as they come and still report the finish reason and token counts."""
    run = _Run(lm, prompt, max_tokens, temperature, top_k, top_p, stop, seed, device, threads)
    pieces: list[str] = []
    for piece in run.pieces():
        pieces.append(piece)
        yield piece
    yield run.generation("".join(pieces))


class _Run:
    def __init__(
        self,
        lm: TrainedLM,
        prompt: str,
        max_tokens: int,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        stop: Sequence[str] | str,
        seed: int | None,
        device: str,
        threads: int | None,
    ) -> None:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, got {type(prompt).__name__}")
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise InvalidInputError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        if not temperature >= 0:
            raise InvalidInputError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
        if top_k is not None and top_k < 1:
            raise InvalidInputError(f"top_k must be >= 1 or None, got {top_k!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1] or None, got {top_p!r}")
        self.stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidInputError(f"stop sequences must be non-empty strings, got {self.stop!r}")
        self.lm, self.max_tokens, self.temperature = lm, max_tokens, float(temperature)
        self.top_k, self.top_p, self.device, self.threads = top_k, top_p, device, threads
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        tok = lm.tokenizer()
        ids = [tok.bos_id, *tok.encode(prompt)]
        block = lm.config.block_size
        self.prompt_truncated = len(ids) > block
        self.context = ids[-block:]
        self.prompt_tokens = len(self.context)
        self.tokens: list[int] = []
        self.finish_reason: FinishReason = "length"
        self.seconds = 0.0

    def generation(self, text: str) -> Generation:
        """The finished run as a value; `text` is its pieces joined (call after pieces() is exhausted)."""
        return Generation(
            text=text,
            tokens=tuple(self.tokens),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            seconds=self.seconds,
            prompt_truncated=self.prompt_truncated,
        )

    def pieces(self) -> Iterator[str]:
        # one thread by default: batch-1 decoding is a chain of small matrix-vector products, and a second
        # thread on a shared machine costs far more (waiting for a busy core) than it gains
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            with blas_threads(self.threads):  # the decode steps are NumPy products (model.decode_step)
                yield from self._pieces()
        finally:
            torch.set_num_threads(previous)

    def _pieces(self) -> Iterator[str]:
        started = time.perf_counter()
        tok = self.lm.tokenizer()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        holdback = max((len(s) for s in self.stop), default=1) - 1
        text, emitted = "", 0
        model: GPT = self.lm.module(self.device)
        # the NumPy copy decode_step reads on the CPU; off the CPU it runs the module and needs none
        self.packed = pack_for_decoding(model) if next(model.parameters()).device.type == "cpu" else None
        # inference mode only around the tensor work, never across a yield: the caller's code between
        # pieces must not run in it
        cache, logits = self._prefill(model, None, self.context)
        while len(self.tokens) < self.max_tokens:
            token = self._pick(logits, (tok.bos_id, tok.pad_id))
            self.tokens.append(token)
            if token == tok.eos_id:
                self.finish_reason = "eos"
                break
            before = len(text)
            text += decoder.decode(tok.token_bytes([token]))
            cut = self._find_stop(text, before)
            if cut is not None:
                text, self.finish_reason = text[:cut], "stop"
                break
            if len(text) - holdback > emitted:
                yield text[emitted : len(text) - holdback]
                emitted = len(text) - holdback
            if len(self.tokens) < self.max_tokens:
                cache, logits = self._advance(model, cache, token)
        if self.finish_reason != "stop":
            before = len(text)
            text += decoder.decode(b"", final=True)  # a dangling partial character becomes U+FFFD
            cut = self._find_stop(text, before)
            if cut is not None:
                text, self.finish_reason = text[:cut], "stop"
        self.seconds = time.perf_counter() - started
        if len(text) > emitted:
            yield text[emitted:]

    def _find_stop(self, text: str, before: int) -> int | None:
        """Where the earliest stop sequence that ends in the new text begins, or None."""
        hits = []
        for s in self.stop:
            i = text.find(s, max(0, before - len(s) + 1))
            if i >= 0:
                hits.append(i)
        return min(hits) if hits else None

    @torch.inference_mode()
    def _prefill(self, model: GPT, cache: KVCache | None, ids: list[int]) -> tuple[KVCache, torch.Tensor]:
        cache = cache or KVCache(self.lm.config, device=self.device)
        cache.length = 0
        idx = torch.tensor([ids], device=self.device)
        logits: torch.Tensor = model(idx, cache)[0, -1].float()  # (vocab,)
        return cache, logits

    def _advance(self, model: GPT, cache: KVCache, token: int) -> tuple[KVCache, torch.Tensor]:
        # no inference_mode here: on the CPU decode_step is NumPy (off it, it enters inference mode itself),
        # and entering it for every token cost more than the tensor work around it
        self.context.append(token)
        if cache.length == self.lm.config.block_size:
            # the window slides: re-encode the newest half (fresh positions) instead of one prefill per token
            self.context = self.context[-(self.lm.config.block_size // 2 or 1) :]
            return self._prefill(model, cache, self.context)
        return cache, decode_step(model, token, cache, self.packed)

    def _pick(self, logits: torch.Tensor, banned: tuple[int, ...]) -> int:
        scores = logits.detach().float().cpu().numpy()  # the same memory on the CPU: NumPy's ops cost less here
        scores[list(banned)] = -np.inf
        if self.temperature == 0:
            return int(scores.argmax())  # the first of equal maxima, as torch.argmax
        with torch.inference_mode():
            return self._sample(torch.from_numpy(scores))

    def _sample(self, logits: torch.Tensor) -> int:
        logits = logits / self.temperature  # > 0 here: _pick takes the argmax itself when greedy
        if self.top_k is not None and self.top_k < logits.numel():
            kth = torch.topk(logits, self.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, -float("inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p is not None and self.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            # drop a token when the tokens ranked above it already reach top_p (the first always stays)
            drop = (torch.cumsum(sorted_probs, 0) - sorted_probs) >= self.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs.cpu(), 1, generator=self.generator))
