"""Retrieval over the workspace's text over HTTP (/api/v1/genai): build an index over a corpus version,
list and show indexes, and ask an index a question -- all through `ws.genai`.

Writers build indexes (stored); asking stores nothing and is a question to a model, so it needs the
`predictor` role, as /predict does. Bad input (no text column, an empty question) is a KeelError from
the facade, answered 4xx naming it; nothing is stored then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import INT64_MAX, Ref, dump, started_job
from keel.server.state import server_state

router = APIRouter(prefix="/api/v1/genai", responses=ERROR_RESPONSES, tags=["genai"])
reader = Depends(need(Role.READER))
writer = Depends(need(Role.WRITER))
predictor = Depends(need(Role.PREDICTOR))

Name = Annotated[str, Field(min_length=1, max_length=128)]
VersionQuery = Query(default=None, ge=1, le=INT64_MAX, description="A version number (default: the latest)")


class IndexRequest(BaseModel):
    name: Name = Field(description="The index's name; a second index of the name is its next version")
    corpus: Ref = Field(description="The corpus version: a table with a text column, or a folder of text files")
    text_column: Name | None = Field(default=None, description="The table's text column (default: its only one)")
    id_column: Name | None = Field(default=None, description="The table's document-id column (default: row number)")
    max_words: Annotated[int, Field(ge=10, le=2000)] = Field(default=120, description="Words per chunk")
    overlap: Annotated[int, Field(ge=1, le=1999)] = Field(default=30, description="Words shared by neighbours")
    questions: Annotated[int, Field(ge=0, le=10_000)] = Field(default=100, description="Held-out questions")
    description: Annotated[str, Field(max_length=10_000)] = ""


class AskRequest(BaseModel):
    question: Annotated[str, Field(min_length=1, max_length=2000)]
    k: Annotated[int, Field(ge=1, le=50)] = Field(default=5, description="Passages returned")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    model: Ref | None = Field(
        default=None, description="A language model version (lm flavour) to answer from the passages, with citations"
    )
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = Field(default=128, description="Answer tokens at most")
    seed: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = Field(default=0, description="Same seed, same answer")


class GPTConfigBody(BaseModel):
    """A GPT's size (keel.genai.GPTConfig); a field left out is the small preset's."""

    vocab_size: Annotated[int, Field(ge=259, le=65_536)] | None = None
    n_layer: Annotated[int, Field(ge=1, le=48)] | None = None
    n_head: Annotated[int, Field(ge=1, le=64)] | None = None
    n_embd: Annotated[int, Field(ge=8, le=4096)] | None = None
    block_size: Annotated[int, Field(ge=8, le=8192)] | None = None
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None


class _LMTraining(BaseModel):
    corpus: Ref = Field(description="The corpus version: a table with a text column, or a folder of text files")
    text_column: Name | None = Field(default=None, description="The table's text column (default: its only one)")
    steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(default=None, description="Training steps")
    tokens: Annotated[int, Field(ge=1, le=10**12)] | None = Field(default=None, description="A token budget")
    batch: Annotated[int, Field(ge=1, le=4096)] = Field(default=16, description="Windows per step")
    lr: Annotated[float, Field(gt=0, lt=1)] | None = Field(default=None, description="Peak learning rate")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    device: Literal["cpu", "cuda"] = "cpu"
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    valid_share: Annotated[float, Field(gt=0, le=0.5)] = Field(default=0.1, description="Documents held out")
    description: Annotated[str, Field(max_length=10_000)] = ""


class TrainLMRequest(_LMTraining):
    name: Name = Field(description="The model's name; a second model of the name is its next version")
    config: Literal["tiny", "small", "base"] | GPTConfigBody = Field(default="small", description="Preset or size")
    vocab_size: Annotated[int, Field(ge=259, le=65_536)] | None = Field(default=None, description="Tokenizer's")
    general: Ref | None = Field(default=None, description="A general language model compared on the held-out text")


class TuneLMRequest(_LMTraining):
    base: Ref = Field(description="The registered language model tuned: 'code@champion'")
    name: Name | None = Field(default=None, description="Register as this model (default: the base's name)")
    method: Literal["lora", "full"] = "lora"
    r: Annotated[int, Field(ge=1, le=256)] = Field(default=8, description="LoRA rank")
    alpha: Annotated[float, Field(gt=0, le=10_000)] = Field(default=16, description="LoRA scale numerator")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(default=0.0, description="LoRA dropout")
    steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(default=200, description="Tuning steps")

    @field_validator("base")
    @classmethod
    def _a_reference(cls, value: str) -> str:
        # ws.genai.tune also takes a local checkpoint directory; a server must not read a path a client names
        from keel.errors import InvalidInputError
        from keel.refs import parse_ref

        try:
            parse_ref(value)
        except InvalidInputError:
            raise ValueError(
                "base must be a registered language model (NAME, NAME@VERSION or NAME@ALIAS); a checkpoint "
                "directory is tuned on the machine that holds it (keel genai tune ./DIR), never named over HTTP"
            ) from None
        return value


@router.post("/models", status_code=202)
def train_model(body: TrainLMRequest, request: Request, response: Response, _: Principal = writer) -> dict[str, Any]:
    """Train a tokenizer and a GPT on the corpus version's training side as a job: 202 with the job (`url`,
    also in `Location`); its result names the registered version (measured against Kneser-Ney and `general`)."""
    from keel.workspace.payloads import GenAITrainPayload

    ws = server_state(request).ws
    options = body.model_dump(exclude_none=True, exclude={"name", "corpus"})
    if isinstance(body.config, GPTConfigBody):
        options["config"] = body.config.model_dump(exclude_none=True)
    corpus = ws.datasets.get(body.corpus).ref  # an unknown corpus is a 404 now, not a failed job later
    if body.general is not None:
        options["general"] = ws.models.get(body.general).ref
    return started_job(ws, GenAITrainPayload(body.name, corpus=corpus, **options), response)


@router.post("/tune", status_code=202)
def tune_model(body: TuneLMRequest, request: Request, response: Response, _: Principal = writer) -> dict[str, Any]:
    """Tune a registered language model on the corpus version (LoRA or full) as a job: 202 with the job
    (`url`, also in `Location`); its result names the registered merged version."""
    from keel.workspace.payloads import GenAITunePayload

    ws = server_state(request).ws
    options = body.model_dump(exclude_none=True, exclude={"base", "corpus"})
    base, corpus = ws.models.get(body.base).ref, ws.datasets.get(body.corpus).ref  # unknown ones: 404 now
    return started_job(ws, GenAITunePayload(base, corpus=corpus, **options), response)


def _ref(name: str, version: int | None) -> str:
    return name if version is None else f"{name}@{version}"


@router.get("/indexes")
def list_indexes(request: Request, _: Principal = reader) -> list[dict[str, Any]]:
    """The latest version of every index."""
    return list(dump(server_state(request).ws.genai.list()))


@router.post("/indexes", status_code=201)
def create_index(body: IndexRequest, request: Request, _: Principal = writer) -> dict[str, Any]:
    """Chunk the corpus version, embed it (cached by chunk content) and count BM25, measure retrieval on
    questions from held-out passages, and store the index's next version (lineage: the corpus)."""
    made = server_state(request).ws.genai.index(
        body.name,
        body.corpus,
        text_column=body.text_column,
        id_column=body.id_column,
        max_words=body.max_words,
        overlap=body.overlap,
        questions=body.questions,
        description=body.description,
    )
    return dict(dump(made))


@router.get("/indexes/{name}")
def show_index(
    name: str, request: Request, version: int | None = VersionQuery, _: Principal = reader
) -> dict[str, Any]:
    """An index version (`?version=`, default the latest) and every version of it."""
    genai = server_state(request).ws.genai
    made = genai.get(_ref(name, version))
    return {"index": dump(made), "versions": dump(genai.versions(made.name))}


@router.post("/{index}/ask")
def ask(
    index: str, body: AskRequest, request: Request, version: int | None = VersionQuery, _: Principal = predictor
) -> dict[str, Any]:
    """The passages that best answer the question, best first, each with its citation (document,
    position in it, score, and its rank by embeddings and by BM25). With `model`, also the answer that
    language model generates from them, the passages it cited (`citations`: ranks) and `supported`
    (false when it cites none of them)."""
    answer = server_state(request).ws.genai.ask(
        _ref(index, version),
        body.question,
        k=body.k,
        mode=body.mode,
        model=body.model,
        max_tokens=body.max_tokens,
        seed=body.seed,
    )
    return dict(dump(answer))
