"""`keel genai`: retrieval indexes over corpus versions (index, list, show) and questions asked of them
(ask: the passages, with their citations)."""

from __future__ import annotations

import typer

from keel.cli._common import JSON_OPTION, escape, number, open_workspace, out, print_json, table, when
from keel.entities_genai import TextIndex

app = typer.Typer(help="Generative AI on your text: retrieval indexes over corpus versions.", no_args_is_help=True)


@app.command("index")
def index(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The index's name (a new version if it exists)."),
    corpus: str = typer.Argument(..., metavar="CORPUS@VERSION", help="A table with a text column, or text files."),
    text_column: str | None = typer.Option(None, "--text-column", help="The table's text column."),
    max_words: int = typer.Option(120, "--max-words", min=10, help="Words per chunk."),
    overlap: int = typer.Option(30, "--overlap", min=1, help="Words shared by consecutive chunks."),
    questions: int = typer.Option(100, "--questions", min=0, help="Held-out questions the index is measured on."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Chunk a corpus version, embed it (the shipped MiniLM; cached by chunk content) and count BM25;
    measure retrieval on questions from held-out passages; store the index (lineage: the corpus)."""
    made = open_workspace(ctx).genai.index(
        name, corpus, text_column=text_column, max_words=max_words, overlap=overlap, questions=questions
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
    as_json: bool = JSON_OPTION,
) -> None:
    """The passages that best answer a question, best first, with their citations."""
    answer = open_workspace(ctx).genai.ask(index_ref, question, k=k, mode=mode)
    if as_json:
        print_json(answer)
        return
    out().print(f"[bold]{escape(answer.index)}[/] ({answer.mode}): {escape(question)}")
    for p in answer.passages:
        text = " ".join(p["text"].split())
        out().print(
            f"  [{p['rank']}] {escape(p['document'])} #{p['position']} (score {number(p['score'])}): "
            f"{escape(text[:160])}{'...' if len(text) > 160 else ''}"
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
