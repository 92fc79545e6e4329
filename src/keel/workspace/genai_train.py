"""Language models from the workspace's text (`ws.genai.train`, `.tune`, `.split`, `.evaluation`,
`.adapter`): a corpus version split by document content hash and de-duplicated, a BPE tokenizer and a
small GPT trained on its training side (keel.genai.train) or a registered language model tuned on it
(keel.genai.lora), measured on the held-out side against the honest bars (interpolated Kneser-Ney
trigram and bigram counted on the same training tokens, and optionally a general model), tracked as a
run and registered as an `lm` version with lineage to the corpus version.

Which perplexities compare: a perplexity is per token, and a token of one tokenizer is not a token of
another (a tokenizer with longer tokens has fewer, harder predictions). The domain model and its n-gram
baselines share one tokenizer and one token stream, so their perplexities compare as they are; a general
model has its own tokenizer, so it is compared in bits per byte (the held-out text's total negative
log-likelihood over its UTF-8 bytes), which does not depend on how the text was cut. Both are recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError, NotFoundError
from keel.refs import check_name

if TYPE_CHECKING:
    import numpy as np

    from keel.entities import ModelVersion
    from keel.genai.lm import GPTConfig, TrainedLM
    from keel.genai.lora import LoRAAdapter
    from keel.workspace.facade import Workspace

__all__ = ["ADAPTER_ARTIFACT", "CorpusSplit", "adapter", "evaluation", "split_corpus", "train", "tune"]

ADAPTER_ARTIFACT = "adapter.safetensors"  # the run artifact a LoRA tune stores its adapter under
METHODS = ("lora", "full")


@dataclass(frozen=True)
class CorpusSplit:
    """A corpus version's texts split by document content hash, then de-duplicated: `train` cleaned of
    repeated paragraphs, `valid` also of paragraphs that (nearly) repeat a training one; `dedupe` counts
    what was removed and the sizes of both sides."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    dedupe: dict[str, int]
    corpus: str = ""


def split_corpus(
    ws: Workspace, corpus: str, *, text_column: str | None = None, valid_share: float = 0.1, seed: int = 0
) -> CorpusSplit:
    """The same split every time for the same corpus version, valid share and seed (by content hash).

    Why split first and de-duplicate after (dedupe_split), not the other way round: splitting raw documents by
    their content hash keeps each document's side independent of every other document, and cleaning the
    held-out side against the cleaned training side then removes every passage the model has seen, which is
    what would otherwise flatter its held-out perplexity.
    """
    from keel.genai.corpus import dedupe_split, split_documents

    if isinstance(valid_share, bool) or not isinstance(valid_share, (int, float)) or not 0.0 < valid_share <= 0.5:
        raise InvalidInputError(f"valid_share must be in (0, 0.5], got {valid_share!r}")
    version = ws.datasets.get(corpus)
    docs = ws.genai.documents(version.ref, text_column=text_column)
    if len(docs) < 2:
        raise InvalidInputError(
            f"corpus {version.ref} has {len(docs)} document with text; a language model needs at least 2 "
            "(one to train on, one held out): add documents, or split a long text into several"
        )
    train_docs, valid_docs = split_documents(docs, float(valid_share), seed=seed)
    train_docs, valid_docs, train_report, valid_report = dedupe_split(train_docs, valid_docs)
    counts = {
        "documents": len(docs),
        "train_documents": len(train_docs),
        "valid_documents": len(valid_docs),
        "train_exact_removed": train_report.exact_removed,
        "train_near_removed": train_report.near_removed,
        "valid_exact_removed": valid_report.exact_removed,
        "valid_near_removed": valid_report.near_removed,
        "valid_seen_in_train": valid_report.cross_removed,
        "documents_dropped": train_report.documents_dropped + valid_report.documents_dropped,
    }
    if not train_docs or not valid_docs:
        side = "held-out" if not valid_docs else "training"
        raise InvalidInputError(
            f"corpus {version.ref} leaves no {side} document ({len(train_docs)} train, {len(valid_docs)} held out "
            f"of {len(docs)} with valid_share={valid_share}, after removing duplicates): add distinct documents "
            "or change valid_share"
        )
    return CorpusSplit(tuple(d.text for d in train_docs), tuple(d.text for d in valid_docs), counts, version.ref)


def _config(config: Any) -> GPTConfig:
    """A preset name, a GPTConfig or a dict of GPTConfig's fields."""
    from keel.genai.lm import PRESETS, GPTConfig

    if isinstance(config, GPTConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise InvalidInputError(f"unknown config preset {config!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[config]
    if isinstance(config, Mapping):
        known = {f.name for f in fields(GPTConfig)}
        unknown = sorted(set(map(str, config)) - known)
        if unknown:
            raise InvalidInputError(f"config has unknown keys {unknown}; known: {', '.join(sorted(known))}")
        return GPTConfig(**{str(k): v for k, v in config.items()})
    raise InvalidInputError(f"config must be a preset name, a GPTConfig or a dict, got {type(config).__name__}")


def _count(name: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")


def _check(steps: Any, tokens: Any, batch: Any, threads: Any, lr: Any) -> None:
    _count("steps", steps)
    _count("tokens", tokens)
    _count("batch", batch, optional=False)
    _count("threads", threads)
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < 1):
        raise InvalidInputError(f"lr must be a number in (0, 1), got {lr!r}")


def _lm(ws: Workspace, ref: str, *, what: str) -> tuple[ModelVersion, TrainedLM]:
    version = ws.models.get(ref)
    if version.flavor != "lm":
        raise InvalidInputError(
            f"{what} {version.ref} is a {version.flavor!r} model, not a language model (flavour 'lm'): "
            "name one that keel genai train or tune registered"
        )
    model: TrainedLM = ws.models.load(version).model
    return version, model


def _per_byte(perplexity: float, predicted: int, n_bytes: int) -> float:
    """Bits per byte of a perplexity over `predicted` tokens of a text of `n_bytes` UTF-8 bytes."""
    return math.log(perplexity) * predicted / (n_bytes * math.log(2))


def _kn_perplexity(model: Any, stream: np.ndarray) -> float:
    """Kneser-Ney perplexity over the tokens the GPT predicts on the same stream: every one after the first."""
    ids = [int(t) for t in stream]
    n = model.order
    nll = -sum(model.log_prob(ids[i], ids[max(0, i - n + 1) : i]) for i in range(1, len(ids)))
    return math.exp(nll / (len(ids) - 1))


def _measures(lm: TrainedLM, split: CorpusSplit, *, device: str, threads: int) -> dict[str, float]:
    """The held-out perplexities of `lm` and of Kneser-Ney trigram and bigram on its tokens, per token and
    per byte; the n-grams are counted on the training stream the GPT saw (same tokenizer, same tokens)."""
    from keel.genai.ngram import KneserNey
    from keel.genai.train import perplexity, token_stream

    tok = lm.tokenizer()
    train_ids, valid_ids = token_stream(tok, split.train), token_stream(tok, split.valid)
    n_bytes = sum(len(t.encode("utf-8")) for t in split.valid)
    predicted = len(valid_ids) - 1
    val = lm.val_perplexity or perplexity(lm, split.valid, device=device, threads=threads)
    out = {"val_perplexity": val, "val_bits_per_byte": _per_byte(val, predicted, n_bytes)}
    for order, key in ((3, "ngram"), (2, "bigram")):
        kn = KneserNey(order=order, vocab_size=tok.vocab_size).fit([train_ids.tolist()])
        ppl = _kn_perplexity(kn, valid_ids)
        out |= {f"{key}_perplexity": ppl, f"{key}_bits_per_byte": _per_byte(ppl, predicted, n_bytes)}
    return out | {
        "held_out_documents": float(len(split.valid)),
        "held_out_tokens": float(predicted),
        "held_out_bytes": float(n_bytes),
    }


def _general(general: TrainedLM, split: CorpusSplit, *, device: str, threads: int) -> dict[str, float]:
    """A general model's held-out perplexity under its own tokenizer, and its bits per byte (comparable)."""
    from keel.genai.train import perplexity, token_stream

    ppl = perplexity(general, split.valid, device=device, threads=threads)
    predicted = len(token_stream(general.tokenizer(), split.valid)) - 1
    n_bytes = sum(len(t.encode("utf-8")) for t in split.valid)
    return {"general_perplexity": ppl, "general_bits_per_byte": _per_byte(ppl, predicted, n_bytes)}


def _enough(lm_tokenizer: Any, split: CorpusSplit, block_size: int) -> None:
    """Refuse a training side too short for one window before a run is started (nothing stored then)."""
    from keel.genai.train import token_stream

    n = len(token_stream(lm_tokenizer, split.train))
    if n < block_size + 1:
        raise InvalidInputError(
            f"corpus {split.corpus}'s training side gives {n} tokens; block_size {block_size} needs at least "
            f"{block_size + 1}: add text, or choose a config with a smaller block_size"
        )


def _register(
    ws: Workspace,
    name: str,
    lm: TrainedLM,
    run_id: str,
    split: CorpusSplit,
    metrics: dict[str, float],
    tags: dict[str, str],
    description: str,
) -> ModelVersion:
    """The `lm` version, linked to its run and corpus; its signature a one-row `prompt` table (what
    /predict takes, and its input example)."""
    import pandas as pd

    prompt = pd.DataFrame({"prompt": [" ".join(split.train[0].split()[:8])]})
    return ws.models.register(
        name, lm, run=run_id, trained_on=split.corpus, X=prompt, metrics=metrics, tags=tags, description=description
    )


def _log_curves(run: Any, lm: TrainedLM) -> None:
    for step, loss in lm.loss_curve:
        run.log_metric("train_loss", float(loss), step=int(step))
    for step, loss in lm.val_curve:
        run.log_metric("val_loss", float(loss), step=int(step))


def _summary(lm: TrainedLM) -> dict[str, float]:
    return {
        "tokens_per_s": float(lm.tokens_per_s),
        "train_tokens": float(lm.tokens_seen),
        "parameters": float(lm.n_params),
        "steps": float(lm.steps),
        "seconds": float(lm.seconds),
    }


def train(
    ws: Workspace,
    name: str,
    corpus: str,
    *,
    config: str | GPTConfig | Mapping[str, Any] = "small",
    text_column: str | None = None,
    steps: int | None = None,
    tokens: int | None = None,
    batch: int = 16,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    vocab_size: int | None = None,
    valid_share: float = 0.1,
    general: str | None = None,
    description: str = "",
) -> ModelVersion:
    """Train a tokenizer and a GPT on the corpus version's training side, measure it on the held-out side
    against Kneser-Ney (and `general`, a registered language model), track the run and register the next
    version of `name`. Everything is checked before training: bad input stores nothing."""
    from keel.genai.tokenizer import train_tokenizer
    from keel.genai.train import resolve_device, train_lm

    check_name(name, what="model name")
    cfg = _config(config)
    _check(steps, tokens, batch, threads, lr)
    _count("vocab_size", vocab_size)
    resolve_device(device)
    general_version, general_lm = _lm(ws, general, what="general model") if general else (None, None)
    split = split_corpus(ws, corpus, text_column=text_column, valid_share=valid_share, seed=seed)
    tok = train_tokenizer(split.train, vocab_size=vocab_size or cfg.vocab_size)
    _enough(tok, split, cfg.block_size)
    params = {"config": cfg.with_vocab(tok.vocab_size).to_dict(), "batch": batch, "lr": lr or 2e-3, "seed": seed}
    params |= {"device": device, "threads": threads, "valid_share": valid_share, **split.dedupe}
    tags = {"keel.genai": "train", "keel.corpus": split.corpus}
    if text_column is not None:  # the monitor reads the same column of the corpus for its reference
        tags["keel.text_column"] = text_column
    if general_version is not None:
        tags["keel.general"] = general_version.ref
    with ws.runs.start(f"genai-{name}", name="train", params=params, tags=tags, inputs=[split.corpus]) as run:
        options: dict[str, Any] = {"lr": lr} if lr is not None else {}
        lm = train_lm(
            split.train, split.valid, config=cfg, tokenizer=tok, steps=steps, tokens=tokens, batch=batch,
            seed=seed, threads=threads, device=device, **options,
        )  # fmt: skip
        _log_curves(run, lm)
        metrics = _summary(lm) | _measures(lm, split, device=device, threads=threads)
        if general_lm is not None:
            metrics |= _general(general_lm, split, device=device, threads=threads)
        run.log_metrics(metrics)
    made = description or f"GPT ({lm.n_params:,} parameters) trained on {split.corpus}, {lm.steps} steps"
    return _register(ws, name, lm, run.id, split, metrics, tags, made)


def _base(ws: Workspace, base: str | os.PathLike[str]) -> tuple[str, str, TrainedLM, dict[str, str], str]:
    """(ref for the tags, default name, model, extra tags, checkpoint directory or "") of a registered model
    or a local GPT-2 checkpoint directory."""
    from keel.workspace.genai_checkpoint import checkpoint_dir, read_checkpoint

    directory = checkpoint_dir(base)
    if directory is None:
        version, lm = _lm(ws, str(base), what="base model")
        return version.ref, version.name, lm, {}, ""
    ckpt = read_checkpoint(directory)
    return ckpt.ref, ckpt.path.name, ckpt.lm, {"keel.base_digest": ckpt.digest}, str(ckpt.path)


def tune(
    ws: Workspace,
    base: str | os.PathLike[str],
    corpus: str,
    *,
    name: str | None = None,
    method: str = "lora",
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    steps: int | None = 200,
    tokens: int | None = None,
    batch: int = 16,
    lr: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    text_column: str | None = None,
    valid_share: float = 0.1,
    description: str = "",
) -> ModelVersion:
    """Tune the registered language model `base` on the corpus version's training side (LoRA or full),
    register the merged model as the next version of `name` (default: the base's name) and, for LoRA,
    store the adapter on its own as the run's artifact (tag keel.adapter; read it with `adapter`).

    `base` may instead be a local GPT-2 checkpoint directory (a Path, or a string that is not a model
    reference, such as ./gpt2-small; see keel.workspace.genai_checkpoint): its name is then the default
    `name`, and the version's tags say keel.base = checkpoint:<directory name>, keel.base_digest = the
    weights' SHA-256."""
    from keel.genai.lora import adapter_to_bytes, tune_lm
    from keel.genai.train import resolve_device

    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _check(steps, tokens, batch, threads, lr)
    _count("r", r, optional=False)
    resolve_device(device)
    base_ref, base_name, base_lm, extra, source = _base(ws, base)
    name = check_name(name or base_name, what="model name (default: the base's name; pass name=...)")
    split = split_corpus(ws, corpus, text_column=text_column, valid_share=valid_share, seed=seed)
    _enough(base_lm.tokenizer(), split, base_lm.config.block_size)
    kind = f"tune-{method}"
    tags = {"keel.genai": kind, "keel.corpus": split.corpus, "keel.base": base_ref, **extra}
    if text_column is not None:
        tags["keel.text_column"] = text_column
    params = {"method": method, "base": base_ref, "batch": batch, "lr": lr, "seed": seed, "device": device}
    params |= {"checkpoint": source} if source else {}
    params |= {"r": r, "alpha": alpha, "dropout": dropout} if method == "lora" else {}
    params |= {"valid_share": valid_share, "threads": threads, **split.dedupe}
    with ws.runs.start(f"genai-{name}", name=kind, params=params, tags=tags, inputs=[split.corpus]) as run:
        tuned = tune_lm(
            base_lm, split.train, split.valid, method=method, r=r, alpha=alpha, dropout=dropout, steps=steps or 200,
            tokens=tokens, batch=batch, lr=lr, seed=seed, threads=threads, device=device,
        )  # fmt: skip
        lm = tuned.merged
        _log_curves(run, lm)
        metrics = _summary(lm) | _measures(lm, split, device=device, threads=threads)
        if tuned.base_perplexity is not None:  # the merged model keeps the base's tokenizer: same tokens
            metrics["base_perplexity"] = float(tuned.base_perplexity)
            metrics["base_bits_per_byte"] = _per_byte(
                tuned.base_perplexity, int(metrics["held_out_tokens"]), int(metrics["held_out_bytes"])
            )
        if tuned.adapter is not None and tuned.adapter_perplexity is not None:
            metrics["adapter_perplexity"] = float(tuned.adapter_perplexity)
            run.log_bytes(adapter_to_bytes(tuned.adapter), ADAPTER_ARTIFACT)
            tags["keel.adapter"] = ADAPTER_ARTIFACT
        run.log_metrics(metrics)
    return _register(
        ws, name, lm, run.id, split, metrics, tags, description or f"{base_ref} tuned ({method}) on {split.corpus}"
    )


def adapter(ws: Workspace, ref: str) -> LoRAAdapter:
    """The LoRA adapter a tuned version was merged from, read back from its run's artifact."""
    from keel.genai.lora import adapter_from_bytes

    version = ws.models.get(ref)
    artifact = version.tags.get("keel.adapter")
    if not artifact or version.run_id is None:
        how = version.tags.get("keel.genai", "not by keel genai")
        raise NotFoundError(f"{version.ref} has no LoRA adapter (it was made {how}); tune with method='lora'")
    return adapter_from_bytes(ws.runs.artifact(version.run_id, artifact))


def _row(name: str, kind: str, metrics: Mapping[str, float], key: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "perplexity": metrics[f"{key}_perplexity"],
        "bits_per_byte": metrics.get(f"{key}_bits_per_byte"),
    }


def evaluation(ws: Workspace, ref: str) -> dict[str, Any]:
    """A language model version's held-out perplexities beside its baselines (see the module's doc for
    which compare per token and which per byte); 'general+lora' is the newest version tuned from the
    general model on the same corpus version, when there is one."""
    version = ws.models.get(ref)
    m, tags = version.metrics, version.tags
    if version.flavor != "lm" or "keel.corpus" not in tags or "val_perplexity" not in m:
        raise InvalidInputError(f"{version.ref} was not trained or tuned by keel genai; it has no held-out evaluation")
    corpus = tags["keel.corpus"]
    rows = [_row(version.ref, "domain", m, "val")]
    if "base_perplexity" in m:
        rows.append(_row(tags.get("keel.base", "base"), "base", m, "base"))
    rows += [_row("kneser-ney trigram", "ngram-3", m, "ngram"), _row("kneser-ney bigram", "ngram-2", m, "bigram")]
    general = tags.get("keel.general")
    if general and "general_perplexity" in m:
        rows.append(_row(general, "general", m, "general"))
        tuned = _tuned_from(ws, general, corpus)
        if tuned is not None:
            rows.append(_row(tuned.ref, "general+lora", tuned.metrics, "val"))
    return {
        "model": version.ref,
        "corpus": corpus,
        "held_out_documents": int(m.get("held_out_documents", 0)),
        "rows": rows,
        "compare": "perplexity per token between rows of one tokenizer (domain, n-grams; a tuned model and its "
        "base); bits per byte across tokenizers (general, general+lora)",
    }


def _tuned_from(ws: Workspace, base: str, corpus: str) -> ModelVersion | None:
    found: list[ModelVersion] = []
    for registered in ws.models.list():
        for v in ws.models.versions(registered.name):
            t = v.tags
            lora = t.get("keel.genai") == "tune-lora" and "val_perplexity" in v.metrics
            if lora and t.get("keel.base") == base and t.get("keel.corpus") == corpus:
                found.append(v)
    return max(found, key=lambda v: v.created_at) if found else None
