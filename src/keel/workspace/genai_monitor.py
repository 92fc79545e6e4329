"""The monitor check of a language model (`lm` flavour): what Monitoring runs for a model whose
prediction log holds prompts (column `prompt`) and the generated texts (`__prediction`).

    TextMonitor(ws)(info, window, config) -> CheckValues

One check yields, as the monitor's metric series (model-level values, feature ''):
- `text_drift` (1 or 0), `text_drift_effect`, `text_drift_pvalue`: the window's prompts against the
  model's training corpus, both embedded with the sentence embedder that ships in a package and
  compared with MMD (keel.genai.text_drift; drifted when significant and the kernel effect size
  reaches its threshold, 0.1);
- `prompt_perplexity` (the model's token perplexity on the prompts) and `prompt_perplexity_ratio`
  (that over the version's `val_perplexity`: text the model finds twice as surprising as its own
  held-out split is text it was not trained for);
- `output_length` (mean words), `output_tokens` (mean tokens of the model's tokenizer),
  `output_chars`, and `prompt_length` (mean words).
The default rules for an lm (keel.monitoring.alert_rules: `prompt-drift`, `prompt-perplexity`) read them.

The corpus is the monitor's `reference` if set, else the version's `keel.corpus` tag, else its first
training dataset. Its side of the comparison is passages of the corpus cut like prompts: windows of
4 to 48 words at random places (seed 0), at most REFERENCE_ROWS of them. Why not whole documents:
the embedder sees length and position too, and on the test corpus prompts that were prefixes of
documents measured drifted (effect 0.53) against 32-word chunks, while windows drawn the same way
from the same documents stayed below the threshold (0.00-0.12, p >= 0.07). The passages' embeddings
are cached twice: in process memory per corpus version, and in the index embedding cache by content
hash (keel.indexes), so neither the next check nor the next process re-embeds the corpus.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInputError
from keel.monitoring.check import CheckValues
from keel.monitoring.columns import AT, ERROR, PREDICTION

if TYPE_CHECKING:
    from keel.entities import ModelVersion
    from keel.monitoring.monitor_config import MonitorConfig
    from keel.workspace.facade import Workspace

__all__ = ["PROMPT", "REFERENCE_ROWS", "WINDOW_ROWS", "TextMonitor", "corpus_of", "corpus_passages"]

PROMPT = "prompt"  # the prompt column of a language model's log rows
REFERENCE_ROWS = 500  # corpus passages embedded as the drift reference
WINDOW_ROWS = 500  # prompts of the window compared (a random sample when there are more)
PASSAGE_WORDS = (4, 48)  # a reference passage's length in words, drawn uniformly
_REMEMBERED = 8  # corpus versions whose reference embeddings this process keeps
_LOCK = threading.Lock()


class TextMonitor:
    """The workspace's `TextCheck` (keel.monitoring.monitor): given to Monitoring by the facade."""

    def __init__(self, ws: Workspace, *, reference_rows: int | None = None, window_rows: int | None = None) -> None:
        self._ws = ws
        self._reference_rows = reference_rows  # None: REFERENCE_ROWS, read at each check
        self._window_rows = window_rows
        self._references: OrderedDict[tuple[str, str, str | None, int], np.ndarray] = OrderedDict()
        self.embedded = 0  # passages embedded by this process (not found in a cache): for tests and logs

    @property
    def reference_rows(self) -> int:
        return REFERENCE_ROWS if self._reference_rows is None else self._reference_rows

    @property
    def window_rows(self) -> int:
        return WINDOW_ROWS if self._window_rows is None else self._window_rows

    def __call__(self, info: ModelVersion, window: pd.DataFrame, config: MonitorConfig) -> CheckValues:
        corpus = corpus_of(self._ws, info, config)
        served = window
        if ERROR in window.columns:
            served = window.loc[window[ERROR].isna()]
        prompts = _texts(served, PROMPT)
        outputs = _texts(served, PREDICTION)
        values: list[tuple[str, str, float | None]] = [
            ("", "rows", float(len(window))),
            ("", "served_rows", float(len(served))),
        ]
        text: dict[str, Any] = {"corpus": corpus, "prompts": len(prompts), "outputs": len(outputs)}
        summary: dict[str, Any] = {
            "model_version": info.version,
            "reference": corpus,
            "features": {},
            "skipped": [],
            "text": text,
        }
        lm = self._ws.models.load(info).model if (prompts or outputs) else None
        self._lengths(lm, prompts, outputs, values)
        if len(prompts) >= config.min_rows:
            sample = _sample(prompts, self.window_rows)
            self._drift(info, corpus, sample, values, text)
            self._perplexity(info, lm, sample, values, text)
        else:
            summary["skipped"].append(
                f"prompt drift and perplexity: {len(prompts)} prompts in the window, fewer than "
                f"min_rows={config.min_rows}"
            )
        drifted = (PROMPT,) if text.get("drifted") else ()
        summary["drifted_features"] = list(drifted)  # the models page shows the model as drifting
        return CheckValues(
            values=values,
            summary=summary,
            drifted=drifted,
            rows=len(window),
            labelled_rows=0,
            window_start=_ts(window[AT].min()) if len(window) else None,
            window_end=_ts(window[AT].max()) if len(window) else None,
        )

    def reference(self, info: ModelVersion, corpus: str) -> np.ndarray:
        """The embeddings of the corpus's reference passages (cached; see the module's docstring)."""
        from keel.workspace.genai import _embedder

        encoder = _embedder()
        column = _text_column(info)
        key = (encoder.model_id, corpus, column, self.reference_rows)
        with _LOCK:
            if key in self._references:
                self._references.move_to_end(key)
                return self._references[key]
        passages = corpus_passages(
            [d.text for d in self._ws.genai.documents(corpus, text_column=column)], self.reference_rows
        )
        matrix = self._embed_cached(encoder, passages)
        with _LOCK:
            self._references[key] = matrix
            while len(self._references) > _REMEMBERED:
                self._references.popitem(last=False)
        return matrix

    def _embed_cached(self, encoder: Any, passages: list[str]) -> np.ndarray:
        """Embeddings of `passages`, reading and filling the index cache by content hash."""
        hashes = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in passages]
        indexes = self._ws.genai.indexes
        found = {
            h: np.frombuffer(v, dtype=np.float32)
            for h, v in indexes.cached_embeddings(encoder.model_id, hashes).items()
        }
        missing = sorted({h: p for h, p in zip(hashes, passages, strict=True) if h not in found}.items())
        if missing:
            fresh = np.asarray(encoder.embed([p for _, p in missing]), dtype=np.float32)
            new = {h: fresh[i] for i, (h, _) in enumerate(missing)}
            indexes.cache_embeddings(encoder.model_id, {h: np.ascontiguousarray(v).tobytes() for h, v in new.items()})
            found.update(new)
            self.embedded += len(missing)
        return np.vstack([found[h] for h in hashes])

    def _drift(
        self, info: ModelVersion, corpus: str, prompts: list[str], values: list[Any], text: dict[str, Any]
    ) -> None:
        from keel.genai.text_drift import text_drift
        from keel.workspace.genai import _embedder

        reference = self.reference(info, corpus)
        current = np.asarray(_embedder().embed(prompts), dtype=np.float32)
        found = text_drift(reference, current, method="mmd", seed=0)
        values += [
            ("", "text_drift", 1.0 if found.drifted else 0.0),
            ("", "text_drift_effect", found.effect_size),
            ("", "text_drift_pvalue", found.p_value),
        ]
        text |= {
            "drifted": found.drifted,
            "reason": found.reason,
            "method": found.method,
            "effect_size": found.effect_size,
            "threshold": found.threshold,
            "p_value": found.p_value,
            "reference_passages": found.n_reference,
            "prompts_compared": found.n_current,
        }

    def _perplexity(
        self, info: ModelVersion, lm: Any, prompts: list[str], values: list[Any], text: dict[str, Any]
    ) -> None:
        from keel.genai.train import perplexity

        found = perplexity(lm, prompts)
        values.append(("", "prompt_perplexity", _finite(found)))
        text["prompt_perplexity"] = _finite(found)
        base = _finite(info.metrics.get("val_perplexity"))
        if base:
            values.append(("", "prompt_perplexity_ratio", _finite(found / base)))
            text["val_perplexity"] = base

    def _lengths(self, lm: Any, prompts: list[str], outputs: list[str], values: list[Any]) -> None:
        from keel.genai.text_drift import length_stats

        if prompts:
            values.append(("", "prompt_length", length_stats(prompts).mean_tokens))
        if outputs:
            stats = length_stats(outputs)
            tokens = lm.tokenizer().encode_batch(outputs)
            values += [
                ("", "output_length", stats.mean_tokens),
                ("", "output_chars", stats.mean_chars),
                ("", "output_tokens", float(np.mean([len(t) for t in tokens]))),
            ]


def corpus_of(ws: Workspace, info: ModelVersion, config: MonitorConfig) -> str:
    """The corpus version a language model is watched against (see the module's docstring)."""
    ref = config.reference or info.tags.get("keel.corpus") or (info.datasets[0] if info.datasets else None)
    if not ref:
        raise InvalidInputError(
            f"{info.ref} names no training corpus (no keel.corpus tag, no training dataset); give its monitor "
            f"one: ws.monitoring.watch({info.name!r}, reference='CORPUS@VERSION')"
        )
    return ws.datasets.get(ref).ref


def corpus_passages(texts: list[str], n: int, *, seed: int = 0) -> list[str]:
    """`n` windows of PASSAGE_WORDS words at random places of random texts (the same for the same
    texts and seed), each the text's own characters from its first word to its last."""
    import re

    spans = [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]
    usable = [(t, s) for t, s in zip(texts, spans, strict=True) if s]
    if not usable:
        raise InvalidInputError("the corpus has no text to compare prompts with")
    rng = random.Random(seed)
    lo, hi = PASSAGE_WORDS
    out = []
    for _ in range(n):
        t, s = usable[rng.randrange(len(usable))]
        words = min(rng.randint(lo, hi), len(s))
        start = rng.randint(0, len(s) - words)
        out.append(t[s[start][0] : s[start + words - 1][1]])
    return out


def _text_column(info: ModelVersion) -> str | None:
    return info.params.get("text_column") or info.tags.get("keel.text_column") or None


def _texts(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    return [str(v) for v in frame[column].tolist() if isinstance(v, str) and v.strip()]


def _sample(texts: list[str], n: int) -> list[str]:
    """At most `n` of `texts`, the same ones for the same window (seed 0)."""
    if len(texts) <= n:
        return texts
    return random.Random(0).sample(texts, n)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _ts(value: Any) -> Any:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).to_pydatetime()
