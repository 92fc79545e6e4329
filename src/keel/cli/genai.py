"""`keel genai`: retrieval indexes over corpus versions (index, list, show) and questions asked of them
(ask: the passages, with their citations)."""

from __future__ import annotations

import typer

from keel.cli import genai_lm
from keel.cli._common import JSON_OPTION, escape, number, open_workspace, out, print_json, table, when
from keel.entities_genai import TextIndex

app = typer.Typer(help="Generative AI on your text: retrieval indexes over corpus versions.", no_args_is_help=True)
# language models trained and tuned on corpus versions (keel.cli.genai_lm)
app.command("train")(genai_lm.train)
app.command("tune")(genai_lm.tune)


@app.command("index")
def index(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The index's name (a new version if it exists)."),
    corpus: str = typer.Argument(..., metavar="CORPUS@VERSION", help="A table with a text column, or text files."),
    text_column: str | None = typer.Option(None, "--text-column", help="The table's text column."),
    id_column: str | None = typer.Option(None, "--id-column", help="The table's document ids (default: row numbers)."),
    max_words: int = typer.Option(120, "--max-words", min=10, help="Words per chunk."),
    overlap: int = typer.Option(30, "--overlap", min=1, help="Words shared by consecutive chunks."),
    questions: int = typer.Option(100, "--questions", min=0, help="Held-out questions the index is measured on."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Chunk a corpus version, embed it (the shipped MiniLM; cached by chunk content) and count BM25;
    measure retrieval on questions from held-out passages; store the index (lineage: the corpus)."""
    made = open_workspace(ctx).genai.index(
        name,
        corpus,
        text_column=text_column,
        id_column=id_column,
        max_words=max_words,
        overlap=overlap,
        questions=questions,
    )
    if as_json:
        print_json(made)
        return
    _print(made)


@app.command("ask")
def ask(
    ctx: typer.Context,
    index_ref: str = typer.Argument(..., metavar="INDEX[@VERSION]"),
    question: str = typer.Argument(...),
    k: int = typer.Option(5, "--k", min=1, max=50, help="Passages returned."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or bm25."),
    model: str | None = typer.Option(
        None, "--model", metavar="MODEL[@VERSION]", help="A language model that answers from the passages."
    ),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Answer tokens at most (with --model)."),
    seed: int = typer.Option(0, "--seed", min=0, help="The same seed gives the same answer (with --model)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The passages that best answer a question, best first, with their citations; with --model, also
    that language model's answer from them and the passages it cited."""
    answer = open_workspace(ctx).genai.ask(
        index_ref, question, k=k, mode=mode, model=model, max_tokens=max_tokens, seed=seed
    )
    if as_json:
        print_json(answer)
        return
    out().print(f"[bold]{escape(answer.index)}[/] ({answer.mode}): {escape(question)}")
    if answer.model is not None:
        out().print(f"[bold]answer[/] ({escape(answer.model)}): {escape(answer.answer or '')}")
        if answer.supported:
            out().print("  cites passages " + ", ".join(f"[{r}]" for r in answer.citations), markup=False)
        else:
            out().print("  unsupported: the answer cites none of the retrieved passages")
    for p in answer.passages:
        text = " ".join(p["text"].split())
        out().print(
            f"  [{p['rank']}] {escape(p['document'])} #{p['position']} (score {number(p['score'])}): "
            f"{escape(text[:160])}{'...' if len(text) > 160 else ''}"
        )


@app.command("generate")
def generate(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="MODEL[@VERSION|@ALIAS]", help="A language model (lm flavour)."),
    prompt: str = typer.Argument(..., help="The text to complete."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Tokens to generate at most."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="0 is greedy."),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Sample among the k likeliest tokens."),
    top_p: float | None = typer.Option(None, "--top-p", help="Sample among the likeliest tokens up to this mass."),
    stop: list[str] = typer.Option([], "--stop", help="A sequence that ends the text (up to 4)."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="The same seed gives the same text."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Complete a prompt with a registered language model."""
    made = open_workspace(ctx).genai.generate(
        model, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, stop=stop, seed=seed
    )
    if as_json:
        print_json(
            {
                "model": model,
                "text": made.text,
                "finish_reason": made.finish_reason,
                "prompt_tokens": made.prompt_tokens,
                "completion_tokens": len(made.tokens),
                "seconds": made.seconds,
                "prompt_truncated": made.prompt_truncated,
            }
        )
        return
    typer.echo(prompt + made.text)
    out().print(
        f"[dim]{len(made.tokens)} tokens ({made.finish_reason}) in {made.seconds * 1000:.0f} ms"
        f"{'; the prompt was cut to its last tokens' if made.prompt_truncated else ''}[/]"
    )


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The latest version of every index."""
    found = open_workspace(ctx).genai.list()
    if as_json:
        print_json(found)
        return
    if not found:
        out().print("No indexes yet: build one with keel genai index NAME CORPUS@VERSION")
        return
    t = table("index", "corpus", "chunks>", "recall@5 (hybrid)>", "created")
    for i in found:
        hybrid = i.spec.get("evaluation", {}).get("hybrid") or {}
        t.add_row(i.ref, i.dataset, f"{i.spec['chunks']:,}", number(hybrid.get("recall@5")), when(i.created_at))
    out().print(t)


@app.command("show")
def show(
    ctx: typer.Context, ref: str = typer.Argument(..., metavar="INDEX[@VERSION]"), as_json: bool = JSON_OPTION
) -> None:
    """An index version: what it holds and how well it retrieves."""
    made = open_workspace(ctx).genai.get(ref)
    if as_json:
        print_json(made)
        return
    _print(made)


def _print(made: TextIndex) -> None:
    s = made.spec
    console = out()
    console.print(f"[bold]index {escape(made.ref)}[/] over {escape(made.dataset)}")
    console.print(
        f"  chunks    {s['chunks']:,} of {s['max_words']} words from {s['corpus_documents']:,} documents; "
        f"{s['embedded']:,} embedded, {s['reused_embeddings']:,} from the cache ({escape(s['embedder'])})",
        markup=False,
    )
    d = s.get("dedupe") or {}
    console.print(
        f"  dedupe    {d.get('exact_removed', 0)} exact, {d.get('near_removed', 0)} near-duplicate paragraphs removed"
    )
    evaluation = s.get("evaluation") or {}
    if evaluation:
        t = table("mode", "questions>", "recall@1>", "recall@5>", "MRR>")
        for mode, r in evaluation.items():
            t.add_row(mode, str(r["n"]), number(r["recall@1"]), number(r["recall@5"]), number(r["mrr"]))
        console.print(t)
