"""Retrieval over the workspace's text as a use case (`ws.genai`): a corpus version (a table with a
text column, or a folder of text files) chunked and indexed with the sentence embedder that ships in
a package plus BM25, fused (keel.genai.retrieval); the index stored as a versioned record with
lineage to the corpus version (keel.indexes), its embeddings cached by chunk content hash (a new
corpus version re-embeds only what changed) and its retrieval quality measured on questions made
from held-out passages; and questions answered with the passages and their citations.

The index blob is a zip of plain values: the arrays as safetensors and the chunks and BM25
vocabulary as JSON (no pickle).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.entities_genai import TextIndex
from keel.errors import InvalidInputError
from keel.indexes import TextIndexes

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from keel.entities import ModelVersion
    from keel.genai.corpus import Document
    from keel.genai.lm import Generation, GPTConfig
    from keel.genai.lora import LoRAAdapter
    from keel.genai.retrieval import HybridIndex
    from keel.storage import BlobStore, MetadataStore
    from keel.workspace.facade import Workspace
    from keel.workspace.genai_train import CorpusSplit

__all__ = ["Answer", "GenAI"]

_LOADED = 4  # indexes kept in memory per process (an index of a large corpus is tens of MB)
_EMBEDDER: dict[str, Any] = {}  # one sentence embedder per process: loading it takes seconds
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Answer:
    """The passages retrieved for a question (each with its citation: document, position, score); asked
    with a model, also the answer it generated from them, the ranks of the passages the answer used
    (`citations`) and `supported` (False when it used none of them; None without a model)."""

    question: str
    index: str  # 'docs@2'
    mode: str
    passages: tuple[dict[str, Any], ...]
    answer: str | None = None
    model: str | None = None  # 'docs-lm@3'
    citations: tuple[int, ...] = ()
    supported: bool | None = None


def _embedder() -> Any:
    with _LOCK:
        if "minilm" not in _EMBEDDER:
            from keel.genai.embeddings import Embedder

            _EMBEDDER["minilm"] = Embedder()
        return _EMBEDDER["minilm"]


class GenAI:
    """`ws.genai`: retrieval indexes over corpus versions, and questions asked of them."""

    def __init__(self, ws: Workspace, meta: MetadataStore, blobs: BlobStore, *, author: str) -> None:
        self._ws = ws
        self.indexes = TextIndexes(meta, blobs, author=author)
        self._loaded: OrderedDict[str, HybridIndex] = OrderedDict()

    def documents(
        self, corpus: str, *, text_column: str | None = None, id_column: str | None = None
    ) -> builtins.list[Document]:
        """A corpus version's documents: a table's text column (named, or its only text column; ids from
        `id_column`, unique, else the row number), or a folder's UTF-8 text files (ids: their paths;
        files that are not UTF-8 text are left out)."""
        from keel.genai.corpus import Document, documents_from_table

        version = self._ws.datasets.get(corpus)
        if version.kind == "files":
            docs = []
            for entry in self._ws.datasets.files(version):
                try:
                    text = self._ws.datasets.read_file(version, entry["path"]).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                docs.append(Document(entry["path"], text, f"{version.ref}:{entry['path']}"))
            if not docs:
                raise InvalidInputError(f"{version.ref} holds no UTF-8 text files to index")
            return docs
        frame = self._ws.datasets.load(version)
        if text_column is None:
            import pandas as pd

            texts = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]
            if len(texts) != 1:
                raise InvalidInputError(
                    f"{version.ref} has {len(texts)} text columns ({', '.join(map(str, texts[:5])) or 'none'}): "
                    "name the one to use with text_column"
                )
            text_column = str(texts[0])
        if text_column not in frame.columns:
            raise InvalidInputError(f"{version.ref} has no column {text_column!r}")
        return documents_from_table(frame, text_column, id_column=id_column)

    def index(
        self,
        name: str,
        corpus: str,
        *,
        text_column: str | None = None,
        id_column: str | None = None,
        max_words: int = 120,
        overlap: int = 30,
        questions: int = 100,
        seed: int = 0,
        description: str = "",
    ) -> TextIndex:
        """Chunk, embed (cached by content hash), count BM25 and store the next version of index `name`
        over corpus version `corpus` (citations name documents by `id_column` of a table, else by row);
        its retrieval quality (recall@1, recall@5, MRR for dense, BM25 and
        hybrid) measured on `questions` questions made from the held-out passages, in its spec."""
        from keel.genai.corpus import dedupe_paragraphs, split_documents
        from keel.genai.embeddings import embed_chunks
        from keel.genai.retrieval import HybridIndex, chunk
        from keel.genai.retrieval_eval import evaluate_retrieval, questions_from

        self.indexes.check_name(name)
        if not 1 <= overlap < max_words:
            raise InvalidInputError(f"overlap must be between 1 and max_words - 1, got {overlap} for {max_words}")
        version = self._ws.datasets.get(corpus)
        docs, dedupe = dedupe_paragraphs(self.documents(version.ref, text_column=text_column, id_column=id_column))
        chunks = chunk(docs, max_words=max_words, overlap=overlap)
        if not chunks:
            raise InvalidInputError(f"{version.ref} has no text to index")
        encoder = _embedder()
        stored = self.indexes.cached_embeddings(encoder.model_id, [c.hash for c in chunks])
        cache = {h: np.frombuffer(v, dtype=np.float32) for h, v in stored.items()}
        matrix, new, reused = embed_chunks(chunks, cache, encoder)
        self.indexes.cache_embeddings(
            encoder.model_id, {h: np.asarray(v, np.float32).tobytes() for h, v in new.items()}
        )
        hybrid = HybridIndex.build(chunks, matrix, encoder=encoder)
        _, held_out = split_documents(docs, 0.2, seed=seed)
        held = {d.id for d in held_out}
        held_chunks = [c for c in chunks if c.doc_id in held]
        asked = questions_from(held_chunks, questions, seed=seed, indexed=chunks) if questions else []
        reports = evaluate_retrieval(hybrid, asked) if asked else {}
        spec = {
            "corpus_documents": len(docs),
            "chunks": len(chunks),
            "max_words": max_words,
            "overlap": overlap,
            "embedder": encoder.model_id,
            "embedded": len(new),
            "reused_embeddings": reused,
            "dedupe": {"exact_removed": dedupe.exact_removed, "near_removed": dedupe.near_removed, "kept": dedupe.kept},
            "evaluation": {
                mode: {"n": r.n, "recall@1": r.recall_at_1, "recall@5": r.recall_at_5, "mrr": r.mrr}
                for mode, r in reports.items()
            },
            "questions_from": "passages of the held-out documents (20 %, by content hash)",
        }
        made = self.indexes.add(name, version, blob=_index_bytes(hybrid), spec=spec, description=description)
        self._remember(made, hybrid)
        return made

    def ask(
        self,
        index: str,
        question: str,
        *,
        k: int = 5,
        mode: str = "hybrid",
        model: str | None = None,
        max_tokens: int = 128,
        seed: int | None = 0,
    ) -> Answer:
        """The `k` passages that best answer `question`, best first, each with its citation; with `model`
        (a language model version), also its answer generated from them and the passages it cited."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidInputError("question must be non-empty text")
        if len(question) > 2000:
            raise InvalidInputError(f"question is {len(question):,} characters; at most 2,000")
        if not 1 <= k <= 50:
            raise InvalidInputError(f"k must be between 1 and 50, got {k}")
        made = self.indexes.get(index)
        hits = self._load(made).search(question, k=k, mode=mode)  # type: ignore[arg-type]
        passages = tuple(
            {
                "rank": i + 1,
                "document": h.doc_id,
                "position": h.position,
                "chunk": h.chunk_id,
                "score": float(h.score),
                "dense_rank": h.dense_rank,
                "bm25_rank": h.bm25_rank,
                "text": h.text,
            }
            for i, h in enumerate(hits)
        )
        found = Answer(question, made.ref, mode, passages)
        if model is None:
            return found
        from keel.workspace.genai_answer import answer_with_model

        return answer_with_model(self._ws, found, model, max_tokens=max_tokens, seed=seed)

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | str = (),
        seed: int | None = None,
    ) -> Generation:
        """`prompt` completed by language model `model` ('name', 'name@3', 'name@alias'); greedy at
        temperature 0, repeatable with a seed. Limits: Settings.genai_max_prompt_chars, genai_max_tokens."""
        from keel.workspace import genai_answer

        return genai_answer.generate(
            self._ws,
            model,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )

    def stream(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | str = (),
        seed: int | None = None,
    ) -> Iterator[str | Generation]:
        """generate() as it is made: text pieces (never a split character), then the whole Generation.
        Under the same seed the pieces join to generate()'s text."""
        from keel.workspace import genai_answer

        return genai_answer.stream(
            self._ws,
            model,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )

    # -- language models: keel.workspace.genai_train ----------------------------------------------
    def train(
        self,
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
        """Train a tokenizer and a GPT (`config`: 'tiny', 'small', 'base', a GPTConfig or a dict) on a corpus
        version's training side, measure it on the held-out side against Kneser-Ney n-grams (and `general`,
        a registered language model), track the run and register the next version of `name` (flavour lm)."""
        from keel.workspace.genai_train import train

        return train(
            self._ws, name, corpus, config=config, text_column=text_column, steps=steps, tokens=tokens,
            batch=batch, lr=lr, seed=seed, device=device, threads=threads, vocab_size=vocab_size,
            valid_share=valid_share, general=general, description=description,
        )  # fmt: skip

    def tune(
        self,
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
        """Tune the registered language model `base` on a corpus version (method 'lora' or 'full'), register
        the merged model as the next version of `name` (default: the base's) and keep a LoRA adapter on
        its own (`adapter(ref)`). `base` may be a local GPT-2 checkpoint directory instead (a Path or ./dir)."""
        from keel.workspace.genai_train import tune

        return tune(
            self._ws, base, corpus, name=name, method=method, r=r, alpha=alpha, dropout=dropout, steps=steps,
            tokens=tokens, batch=batch, lr=lr, seed=seed, device=device, threads=threads, text_column=text_column,
            valid_share=valid_share, description=description,
        )  # fmt: skip

    def split(
        self, corpus: str, *, text_column: str | None = None, valid_share: float = 0.1, seed: int = 0
    ) -> CorpusSplit:
        """A corpus version's training and held-out texts, by content hash, de-duplicated."""
        from keel.workspace.genai_train import split_corpus

        return split_corpus(self._ws, corpus, text_column=text_column, valid_share=valid_share, seed=seed)

    def evaluation(self, model: str) -> dict[str, Any]:
        """A language model version's held-out perplexity beside its baselines (see genai_train.evaluation)."""
        from keel.workspace.genai_train import evaluation

        return evaluation(self._ws, model)

    def adapter(self, model: str) -> LoRAAdapter:
        """The LoRA adapter a tuned version was merged from."""
        from keel.workspace.genai_train import adapter

        return adapter(self._ws, model)

    def get(self, ref: str) -> TextIndex:
        return self.indexes.get(ref)

    def list(self) -> builtins.list[TextIndex]:
        return self.indexes.list()

    def versions(self, name: str) -> builtins.list[TextIndex]:
        return self.indexes.versions(name)

    def _load(self, made: TextIndex) -> HybridIndex:
        if made.digest in self._loaded:
            self._loaded.move_to_end(made.digest)
            return self._loaded[made.digest]
        hybrid = _index_from_bytes(self.indexes.blob(made), _embedder())
        self._remember(made, hybrid)
        return hybrid

    def _remember(self, made: TextIndex, hybrid: HybridIndex) -> None:
        self._loaded[made.digest] = hybrid
        while len(self._loaded) > _LOADED:
            self._loaded.popitem(last=False)


def _index_bytes(hybrid: HybridIndex) -> bytes:
    from safetensors.numpy import save

    arrays, meta = hybrid.to_values()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("arrays.safetensors", save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
        z.writestr("index.json", json.dumps(meta))
    return out.getvalue()


def _index_from_bytes(data: bytes, encoder: Any) -> HybridIndex:
    from safetensors.numpy import load

    from keel.genai.retrieval import HybridIndex

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        arrays = load(z.read("arrays.safetensors"))
        meta = json.loads(z.read("index.json"))
    return HybridIndex.from_values(arrays, meta, encoder=encoder)
