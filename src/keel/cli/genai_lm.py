"""`keel genai train` and `keel genai tune`: a language model trained on a corpus version, or a registered one
tuned on it (LoRA or full), measured on the held-out side against its baselines and registered; with
--queue, a job for keel worker / keel serve instead. The commands are registered on `keel genai`'s app
(keel.cli.genai)."""

from __future__ import annotations

import json
from typing import Any

import typer

from keel.cli._common import JSON_OPTION, escape, number, open_workspace, out, print_json, queue_job, table

__all__ = ["parse_lora", "train", "tune"]

_LORA_KEYS = {"r": int, "alpha": float, "dropout": float}


def parse_lora(text: str) -> dict[str, Any]:
    """`r=8,alpha=16,dropout=0.05` as keyword arguments; anything else is a usage error naming the part."""
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _LORA_KEYS:
            raise typer.BadParameter(
                f"{part!r} is not KEY=VALUE with KEY one of r, alpha, dropout (for example r=8,alpha=16)",
                param_hint="'--lora'",
            )
        try:
            options[key] = _LORA_KEYS[key](value.strip())
        except ValueError:
            raise typer.BadParameter(f"{key}={value!r} is not a number", param_hint="'--lora'") from None
    return options


def _config(text: str) -> str | dict[str, Any]:
    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc.msg})", param_hint="'--config'") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("a JSON config must be an object", param_hint="'--config'")
    return value


def train(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name (a new version if it exists)."),
    corpus: str = typer.Argument(..., metavar="CORPUS@VERSION", help="A table with a text column, or text files."),
    config: str = typer.Option("small", "--config", help="A size preset (tiny, small, base) or a JSON GPTConfig."),
    text_column: str | None = typer.Option(None, "--text-column", help="The table's text column."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Training steps (default 200)."),
    tokens: int | None = typer.Option(None, "--tokens", min=1, help="A token budget instead of --steps."),
    batch: int = typer.Option(16, "--batch", min=1, help="Windows per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 2e-3)."),
    seed: int = typer.Option(0, "--seed", min=0, help="The split's and the training's seed."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads."),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", min=259, help="Tokenizer vocabulary (default: the preset's)."
    ),
    valid_share: float = typer.Option(0.1, "--valid-share", help="Share of documents held out (by content hash)."),
    general: str | None = typer.Option(None, "--general", metavar="MODEL@VERSION", help="A general model to compare."),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a BPE tokenizer and a GPT on a corpus version's training side, measure its held-out perplexity
    against Kneser-Ney trigram and bigram (and --general), track the run and register the model."""
    options: dict[str, Any] = {"config": _config(config), "text_column": text_column, "steps": steps}
    options |= {"tokens": tokens, "batch": batch, "lr": lr, "seed": seed, "device": device, "threads": threads}
    options |= {"vocab_size": vocab_size, "valid_share": valid_share, "general": general}
    ws = open_workspace(ctx)
    if queue:
        from keel.workspace.payloads import GenAITrainPayload

        corpus_ref = ws.datasets.get(corpus).ref  # an unknown corpus fails here, not in the worker
        set_ = {k: v for k, v in options.items() if v is not None}
        queue_job(ws, GenAITrainPayload(name, corpus=corpus_ref, **set_), as_json)
        return
    made = ws.genai.train(name, corpus, **options)
    _report(ws, made.ref, as_json)


def tune(
    ctx: typer.Context,
    base: str = typer.Argument(
        ...,
        metavar="BASE@VERSION|@ALIAS|./DIR",
        help="A registered language model, or a local GPT-2 checkpoint folder.",
    ),
    corpus: str = typer.Argument(..., metavar="CORPUS@VERSION", help="A table with a text column, or text files."),
    lora: str | None = typer.Option(None, "--lora", metavar="r=8,alpha=16,dropout=0", help="LoRA (the default)."),
    full: bool = typer.Option(False, "--full", help="Tune every weight instead of a LoRA adapter."),
    name: str | None = typer.Option(None, "--name", help="Register as this model (default: the base's name)."),
    text_column: str | None = typer.Option(None, "--text-column", help="The table's text column."),
    steps: int = typer.Option(200, "--steps", min=1, help="Tuning steps."),
    batch: int = typer.Option(16, "--batch", min=1, help="Windows per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default 1e-3 LoRA, 3e-4 full)."),
    seed: int = typer.Option(0, "--seed", min=0, help="The split's and the tuning's seed."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(1, "--threads", min=1, help="CPU threads."),
    valid_share: float = typer.Option(0.1, "--valid-share", help="Share of documents held out (by content hash)."),
    queue: bool = typer.Option(False, "--queue", help="Queue it as a job for keel worker / keel serve instead."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Tune a registered language model on a corpus version (LoRA, or --full), measure it against the base
    and Kneser-Ney on the held-out side and register the merged model; a LoRA adapter is kept on its own.
    BASE may be a local GPT-2 checkpoint folder (config.json, model.safetensors, tokenizer.json; nothing is
    downloaded, no pickle is read): write ./DIR."""
    if full and lora is not None:
        raise typer.BadParameter("choose LoRA or full tuning, not both", param_hint="'--lora' / '--full'")
    options: dict[str, Any] = {"method": "full" if full else "lora", **parse_lora(lora or "")}
    options |= {"name": name, "text_column": text_column, "steps": steps, "batch": batch, "lr": lr, "seed": seed}
    options |= {"device": device, "threads": threads, "valid_share": valid_share}
    ws = open_workspace(ctx)
    if queue:
        from keel.workspace.genai_checkpoint import checkpoint_dir
        from keel.workspace.payloads import GenAITunePayload

        if checkpoint_dir(base) is not None:  # a worker (or a server) must not read a path a client names
            raise typer.BadParameter("a checkpoint folder is tuned here, not queued: drop --queue", param_hint="BASE")
        base_ref, corpus_ref = ws.models.get(base).ref, ws.datasets.get(corpus).ref  # unknown ones fail here
        set_ = {k: v for k, v in options.items() if v is not None}
        queue_job(ws, GenAITunePayload(base_ref, corpus=corpus_ref, **set_), as_json)
        return
    made = ws.genai.tune(base, corpus, **options)
    _report(ws, made.ref, as_json)


def _report(ws: Any, ref: str, as_json: bool) -> None:
    report = ws.genai.evaluation(ref)
    if as_json:
        print_json(report)
        return
    m = ws.models.get(ref).metrics
    console = out()
    console.print(f"[bold]registered {escape(ref)}[/] from {escape(report['corpus'])}")
    console.print(
        f"  {int(m['parameters']):,} parameters, {int(m['steps']):,} steps, {int(m['train_tokens']):,} tokens "
        f"at {m['tokens_per_s']:,.0f} tokens/s; {report['held_out_documents']} documents held out",
        markup=False,
    )
    t = table("model", "kind", "perplexity>", "bits/byte>")
    for row in report["rows"]:
        t.add_row(escape(row["name"]), row["kind"], number(row["perplexity"]), number(row["bits_per_byte"]))
    console.print(t)
    console.print(f"  compare {report['compare']}", markup=False)
