"""Text generation from registered language models (`ws.genai.generate` / `stream`), and questions
answered by one from retrieved passages (`ws.genai.ask(..., model=...)`).

A model is named like any other ('docs-lm', 'docs-lm@3', 'docs-lm@champion'); its version must be of
the `lm` flavour. Requests are checked against the workspace's limits (`Settings.genai_max_prompt_chars`,
`genai_max_tokens`) before any model is loaded; the errors name the field at fault (`LimitError.field`),
which the HTTP route answers as a 422 on that field. The compute (prompt, citations) is keel.genai.answer.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError

if TYPE_CHECKING:
    from keel.entities import ModelVersion
    from keel.genai.lm import Generation, TrainedLM
    from keel.settings import Settings
    from keel.workspace.facade import Workspace
    from keel.workspace.genai import Answer

__all__ = [
    "LimitError",
    "Sampling",
    "answer_with_model",
    "check_sampling",
    "complete",
    "complete_stream",
    "generate",
    "language_model",
    "require_lm",
    "stream",
]

MAX_STOP = 4  # stop sequences per request
MAX_STOP_CHARS = 64
# Answers are sampled close to greedy: a small model copies from the passages it was given far more
# often at a low temperature, and the seed still makes the same question give the same answer.
ASK_TEMPERATURE = 0.3
# No blank-line stop: a small model often starts its answer with one, which left the answer empty.
ASK_STOP = ("\nQuestion:", "\n[")
_LOADED = 2  # language models kept in memory per process (the 12M preset is ~50 MB of float32)
_CACHE: OrderedDict[str, TrainedLM] = OrderedDict()  # by artifact digest: the same bytes are the same model
_LOCK = threading.Lock()


class LimitError(InvalidInputError):
    """A generation request outside the limits; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Sampling:
    """Checked sampling parameters of one generation."""

    max_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    stop: tuple[str, ...]
    seed: int | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }


def check_sampling(
    settings: Settings,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop: Sequence[str] | str,
    seed: int | None,
) -> Sampling:
    """The request's sampling parameters, checked against the limits; LimitError names what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise LimitError("prompt", "prompt must be non-empty text")
    if len(prompt) > settings.genai_max_prompt_chars:
        raise LimitError(
            "prompt",
            f"prompt is {len(prompt):,} characters; at most {settings.genai_max_prompt_chars:,} "
            "(KEEL_GENAI_MAX_PROMPT_CHARS)",
        )
    if (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= settings.genai_max_tokens
    ):
        raise LimitError(
            "max_tokens",
            f"max_tokens must be an integer from 1 to {settings.genai_max_tokens} (KEEL_GENAI_MAX_TOKENS), "
            f"got {max_tokens!r}",
        )
    if not isinstance(temperature, int | float) or not math.isfinite(temperature) or temperature < 0:
        raise LimitError("temperature", f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise LimitError("top_k", f"top_k must be an integer >= 1, or left out, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p <= 1):
        raise LimitError("top_p", f"top_p must be in (0, 1], or left out, got {top_p!r}")
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOP:
        raise LimitError("stop", f"at most {MAX_STOP} stop sequences, got {len(stops)}")
    if any(not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS for s in stops):
        raise LimitError("stop", f"stop sequences must be non-empty strings of at most {MAX_STOP_CHARS} characters")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise LimitError("seed", f"seed must be an integer from 0 to 2**63 - 1, or left out, got {seed!r}")
    return Sampling(max_tokens, float(temperature), top_k, None if top_p is None else float(top_p), stops, seed)


def require_lm(version: ModelVersion) -> None:
    """Refuse a version that is not a language model (before its artifact is read)."""
    if version.flavor != "lm":
        raise InvalidInputError(
            f"{version.ref} is a {version.flavor!r} model, not a language model: generation needs a version "
            "of the 'lm' flavour (trained with ws.genai.train, or a keel.genai TrainedLM registered)"
        )


def language_model(ws: Workspace, model_ref: str) -> tuple[ModelVersion, TrainedLM]:
    """The version `model_ref` names and its language model (kept in memory by artifact digest)."""
    version = ws.models.get(model_ref)
    require_lm(version)
    with _LOCK:
        if version.digest in _CACHE:
            _CACHE.move_to_end(version.digest)
            return version, _CACHE[version.digest]
    lm: TrainedLM = ws.models.load(version).model
    with _LOCK:
        _CACHE[version.digest] = lm
        while len(_CACHE) > _LOADED:
            _CACHE.popitem(last=False)
    return version, lm


def complete(lm: TrainedLM, prompt: str, sampling: Sampling) -> Generation:
    """`prompt` completed by a loaded language model under checked `sampling` (the server's route)."""
    from keel.genai.generation import generate as run

    return run(lm, prompt, **sampling.kwargs())


def complete_stream(lm: TrainedLM, prompt: str, sampling: Sampling) -> Iterator[str | Generation]:
    """complete()'s text pieces as they are made, then the whole Generation."""
    from keel.genai.generation import stream_generation

    return stream_generation(lm, prompt, **sampling.kwargs())


def generate(ws: Workspace, model_ref: str, prompt: str, **sampling: Any) -> Generation:
    """`prompt` completed by the language model `model_ref` (see ws.genai.generate)."""
    from keel.genai.generation import generate as run

    checked = check_sampling(ws.settings, prompt, **sampling)
    _, lm = language_model(ws, model_ref)
    return run(lm, prompt, **checked.kwargs())


def stream(ws: Workspace, model_ref: str, prompt: str, **sampling: Any) -> Iterator[str | Generation]:
    """The completion's text pieces as they are made, then the whole Generation (see ws.genai.stream).
    The request is checked and the model loaded now, not at the first piece."""
    from keel.genai.generation import stream_generation

    checked = check_sampling(ws.settings, prompt, **sampling)
    _, lm = language_model(ws, model_ref)
    return stream_generation(lm, prompt, **checked.kwargs())


def answer_with_model(ws: Workspace, answer: Answer, model_ref: str, *, max_tokens: int, seed: int | None) -> Answer:
    """`answer` (its passages retrieved) with a generated answer conditioned on them, the passages the
    answer used (their ranks) and whether it used any."""
    from keel.genai.answer import answer_prompt, find_citations
    from keel.genai.generation import generate as run

    texts = [str(p["text"]) for p in answer.passages]
    limit = ws.settings.genai_max_prompt_chars
    # every passage gets an equal share of the prompt limit (the question and the framing come first)
    share = (limit - len(answer.question) - 40 - 8 * len(texts)) // max(1, len(texts))
    if share < 1:
        raise LimitError("question", f"the question leaves no room for passages in {limit:,} prompt characters")
    prompt = answer_prompt(answer.question, texts, max_passage_chars=min(600, share))
    checked = check_sampling(
        ws.settings,
        prompt,
        max_tokens=max_tokens,
        temperature=ASK_TEMPERATURE,
        top_k=None,
        top_p=None,
        stop=ASK_STOP,
        seed=seed,
    )
    version, lm = language_model(ws, model_ref)
    text = run(lm, prompt, **checked.kwargs()).text.strip()
    cited = find_citations(text, texts)
    return replace(answer, answer=text, model=version.ref, citations=cited.ranks, supported=cited.supported)
