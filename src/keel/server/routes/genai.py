"""Retrieval over the workspace's text over HTTP (/api/v1/genai): build an index over a corpus version,
list and show indexes, and ask an index a question -- all through `ws.genai`.

Writers build indexes (stored); asking stores nothing and is a question to a model, so it needs the
`predictor` role, as /predict does. Bad input (no text column, an empty question) is a KeelError from
the facade, answered 4xx naming it; nothing is stored then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES
from keel.server.schemas import INT64_MAX, Ref, dump
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
    max_words: Annotated[int, Field(ge=10, le=2000)] = Field(default=120, description="Words per chunk")
    overlap: Annotated[int, Field(ge=1, le=1999)] = Field(default=30, description="Words shared by neighbours")
    questions: Annotated[int, Field(ge=0, le=10_000)] = Field(default=100, description="Held-out questions")
    description: Annotated[str, Field(max_length=10_000)] = ""


class AskRequest(BaseModel):
    question: Annotated[str, Field(min_length=1, max_length=2000)]
    k: Annotated[int, Field(ge=1, le=50)] = Field(default=5, description="Passages returned")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


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
    position in it, score, and its rank by embeddings and by BM25)."""
    answer = server_state(request).ws.genai.ask(_ref(index, version), body.question, k=body.k, mode=body.mode)
    return dict(dump(answer))
