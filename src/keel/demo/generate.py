"""Act 16, Generate: a small code model trained on the Python standard library's own source (on every
machine that runs Python), measured against the honest baselines on held-out modules -- an interpolated
Kneser-Ney trigram counted on the same training tokens, a general model of the same size trained with
the same budget on English prose (Python's bundled `pydoc_data` documentation topics), and that general
model after LoRA on the code -- then asked to complete a line of code; and a question answered from the
documentation topics (a retrieval index), with the passages it cites.

The training is brief (tens of seconds on one thread); bench/genai.py trains for the issue's budget.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, step

if TYPE_CHECKING:
    from rich.console import Console

    from keel.workspace import Workspace

__all__ = ["GenerateResult", "write_code", "stdlib_modules", "doc_topics"]

CODE, DOCS = "stdlib-code", "python-docs"
CODE_LM, PROSE_LM, TUNED_LM, INDEX = "code-lm", "prose-lm", "prose-lm-code", "python-docs"
MODULES = 60  # top-level stdlib modules of 4-40 kB, in name order: ~1 MB of code
STEPS, TUNE_STEPS, BATCH = 300, 60, 8  # ~30 s a model on one core
PROMPT = "def read_lines(path):\n    "
QUESTION = "How do I catch an exception and handle it?"
# the documentation topics indexed: the statements (the index embeds every chunk, ~0.05 s each on one core)
DOC_TOPICS = (
    "assert",
    "assignment",
    "break",
    "class",
    "continue",
    "del",
    "exceptions",
    "for",
    "function",
    "global",
    "if",
    "import",
    "lambda",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
)


@dataclass(frozen=True)
class GenerateResult:
    """What the act made, for callers and tests."""

    corpus: str  # 'stdlib-code@1'
    model: str  # 'code-lm@1'
    evaluation: dict[str, Any]  # ws.genai.evaluation(model)
    completion: str
    index: str  # 'python-docs@1'
    answer: dict[str, Any]  # the question, the passages, the generated answer and its citations


def stdlib_modules(count: int = MODULES) -> Any:
    """The standard library's own top-level modules as a table (path, text), smallest noise first."""
    import pandas as pd

    root = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    for path in sorted(root.glob("*.py")):
        if path.name.startswith("_") or not 4_000 <= path.stat().st_size <= 40_000:
            continue  # private helpers and the largest modules would dominate a small corpus
        try:
            rows.append({"path": path.name, "text": path.read_text(encoding="utf-8")})
        except (OSError, UnicodeDecodeError):
            continue
        if len(rows) == count:
            break
    return pd.DataFrame(rows)


def doc_topics(names: tuple[str, ...] | None = None) -> Any:
    """Python's bundled documentation topics (pydoc_data) as a table (topic, text): `names`, else all."""
    from pydoc_data.topics import topics

    import pandas as pd

    names = tuple(n for n in names if n in topics) if names else tuple(sorted(topics))
    return pd.DataFrame({"topic": names, "text": [topics[n] for n in names]})


def write_code(ws: Workspace, console: Console, number: int = 16) -> GenerateResult:
    """Train, compare, complete, and answer a question from the documentation, with citations."""
    with console.status("Training a code model on the standard library's source..."):
        code = ws.datasets.add(CODE, stdlib_modules(), description="Python's standard library: top-level modules")
        docs = ws.datasets.add(DOCS, doc_topics(), description="Python's documentation topics (pydoc_data)")
        options: dict[str, Any] = {"config": "tiny", "steps": STEPS, "batch": BATCH, "seed": 0, "text_column": "text"}
        general = ws.genai.train(PROSE_LM, docs.ref, **options)  # the same size and budget, on prose
        model = ws.genai.train(CODE_LM, code.ref, general=general.ref, **options)
        ws.genai.tune(general.ref, code.ref, name=TUNED_LM, steps=TUNE_STEPS, batch=BATCH, seed=0, text_column="text")
        evaluation = ws.genai.evaluation(model.ref)
        completion = ws.genai.generate(model.ref, PROMPT, max_tokens=24, temperature=0.0, stop=("\n\n",)).text
    with console.status("Indexing the documentation topics and asking them..."):
        part = ws.datasets.add(f"{DOCS}-part", doc_topics(DOC_TOPICS))
        index = ws.genai.index(INDEX, part.ref, text_column="text", id_column="topic", questions=50)
        # the passages and their citations; a generated answer (ask(..., model=)) needs a better-trained model
        answer = ws.genai.ask(index.ref, QUESTION, k=3)
    rows = {r["kind"]: r for r in evaluation["rows"]}
    ours, trigram = rows["domain"]["bits_per_byte"], rows["ngram-3"]["bits_per_byte"]
    verdict = (
        "below the trigram"
        if ours < trigram
        else "the trigram wins at this budget; bench/genai.py trains for 30 minutes"
    )
    console.print(
        f"{step(number, 'Generate')}a code model on the standard library's source ({code.ref}: {code.num_rows} "
        f"modules, {_version()}): {model.metrics.get('parameters', 0) / 1e6:.1f}M parameters, {STEPS} steps, "
        f"{model.metrics.get('tokens_per_s', 0):,.0f} tokens/s"
    )
    console.print(f"{INDENT}held-out bits per byte: {_table(rows)} ({verdict})")
    console.print(f"{INDENT}{model.ref} completes {PROMPT.strip()!r} with {completion.strip()[:60]!r}")
    cited = ", ".join(f"[{p['rank']}] {p['document']} #{p['position']}" for p in answer.passages)
    console.print(
        f"{INDENT}{QUESTION!r} asked of the documentation (pydoc_data topics, {index.ref}: "
        f"{index.spec['chunks']} passages, recall@5 {index.spec['evaluation']['hybrid']['recall@5']:.0%}): {cited}"
    )
    return GenerateResult(code.ref, model.ref, evaluation, completion, index.ref, _answer(answer))


def _table(rows: dict[str, dict[str, Any]]) -> str:
    names = {
        "domain": "this model",
        "ngram-3": "Kneser-Ney trigram",
        "ngram-2": "bigram",
        "general": "general model",
        "general+lora": "general + LoRA",
    }
    # bits per byte, not per-token perplexity: the general model has its own tokenizer
    return ", ".join(f"{names[k]} {rows[k]['bits_per_byte']:.2f}" for k in names if k in rows)


def _answer(answer: Any) -> dict[str, Any]:
    return {
        "question": answer.question,
        "passages": [dict(p) for p in answer.passages],
        "answer": answer.answer,
        "citations": list(answer.citations),
        "supported": answer.supported,
    }


def _version() -> str:
    import sys

    return f"Python {sys.version_info.major}.{sys.version_info.minor}"
