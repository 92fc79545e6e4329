"""Text generation from a registered language model: `POST /api/v1/models/{name}/generate`.

The model is resolved as /predict resolves it (the champion unless ?alias= or ?version=; the server's
loaded-model cache), must be of the `lm` flavour, and the request is checked against the workspace's
limits (keel.workspace.genai_answer.check_sampling: a 422 naming the field). The text comes back whole
(JSON) or, with `"stream": true`, as server-sent events: `data: {"text": piece}` per piece, then
`event: done` with the same summary the whole answer has (or `event: error` if generation fails once
the stream has begun). Generation runs in the threadpool, never on the event loop; a stream's pieces
are produced there one by one (Starlette iterates a plain generator in a thread).

Every generation is in the prediction log under the model: the record holds the prompt and its token
counts (`prompt`, `prompt_tokens`, `completion_tokens`, `finish_reason`, `temperature`, `max_tokens`,
`stream`), the prediction is the generated text, with the version, the latency and who asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from keel.entities import Role
from keel.server.auth import Principal, need
from keel.server.errors import ERROR_RESPONSES, HTTPProblem
from keel.server.routes.predict import _model_for, _observe, maker
from keel.server.schemas import INT64_MAX, FiniteFloat
from keel.server.state import server_state
from keel.workspace.genai_answer import LimitError, Sampling, check_sampling, complete, complete_stream, require_lm

if TYPE_CHECKING:
    from keel.workspace.facade import LoadedModel, PredictionLogger
    from keel.workspace.genai_answer import Generation

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
predictor = Depends(need(Role.PREDICTOR))


class GenerateRequest(BaseModel):
    prompt: str = Field(description="The text to complete (at most KEEL_GENAI_MAX_PROMPT_CHARS characters)")
    max_tokens: int = Field(default=128, description="Tokens to generate at most (1..KEEL_GENAI_MAX_TOKENS)")
    temperature: Annotated[FiniteFloat, Field(ge=0)] = Field(default=0.8, description="0 is greedy")
    top_k: int | None = Field(default=None, description="Sample among the k likeliest tokens only")
    top_p: FiniteFloat | None = Field(default=None, description="Sample among the likeliest tokens up to this mass")
    stop: list[str] | str = Field(default_factory=list, description="Up to 4 sequences that end the text")
    seed: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = Field(
        default=None, description="The same seed and request give the same text (whole or streamed)"
    )
    stream: bool = Field(default=False, description="Answer as server-sent events, a piece of text per token")


GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'The completion (JSON), or with stream=true server-sent events: `data: {"text": ...}` '
        "per piece, then `event: done` with the summary below",
        "content": {
            "application/json": {
                "example": {
                    "id": "0192c3a4b5d6e7f8a9b0c1d2e3f4a5b6",
                    "model": "docs-lm",
                    "version": 3,
                    "text": " return x + y",
                    "finish_reason": "length",
                    "prompt_tokens": 6,
                    "completion_tokens": 8,
                    "latency_ms": 9.4,
                    "prompt_truncated": False,
                }
            },
            "text/event-stream": {},
        },
    }
}


@router.post("/models/{name}/generate", tags=["predict"], responses=GENERATE_RESPONSES)
async def generate(
    name: str,
    body: GenerateRequest,
    request: Request,
    alias: str | None = Query(default=None),
    version: int | None = Query(default=None, ge=1, le=INT64_MAX),
    who: Principal = predictor,
) -> Response:
    """Complete a prompt with a language model (`lm` flavour); the champion unless ?alias= or ?version=.

    Sampling: temperature (0: greedy), top_k, top_p, stop sequences, a seed (the same seed gives the
    same text whether streamed or whole), max_tokens. Every generation is in the prediction log.
    """
    state = server_state(request)
    try:
        sampling = check_sampling(
            state.ws.settings,
            body.prompt,
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            stop=body.stop,
            seed=body.seed,
        )
    except LimitError as exc:
        raise HTTPProblem(422, str(exc), field=exc.field) from None
    model = await _model_for(request, name, alias, version, accept=require_lm)  # refused before it is loaded
    require_lm(model.info)  # (a cached one was loaded for /predict, maybe)
    ids, at_ms = state.predlog.new_ids(1)
    log = _Log(state.predlog, model, body.prompt, sampling, ids, at_ms, maker(who), stream=body.stream)
    if body.stream:
        events = _events(model, body.prompt, sampling, log, lambda s: _observe(request, model, 1, s))
        return StreamingResponse(events, media_type="text/event-stream")
    start = time.perf_counter()
    try:
        made = await run_in_threadpool(complete, model.model, body.prompt, sampling)
    except Exception as exc:
        log.write(None, time.perf_counter() - start, error=str(exc))
        raise
    elapsed = time.perf_counter() - start
    await log.write_async(made, elapsed)
    _observe(request, model, 1, elapsed)
    return Response(orjson.dumps(_summary(model, ids[0], made, elapsed)), media_type="application/json")


def _events(
    model: LoadedModel, prompt: str, sampling: Sampling, log: _Log, observe: Callable[[float], None]
) -> Iterator[bytes]:
    """The server-sent events of one generation; iterated in the threadpool by StreamingResponse.
    `observe(seconds)` counts a finished generation in the metrics, as a whole one is counted."""
    start = time.perf_counter()
    try:
        for item in complete_stream(model.model, prompt, sampling):
            if not isinstance(item, str):  # the last item: the whole Generation
                elapsed = time.perf_counter() - start
                log.write(item, elapsed)
                observe(elapsed)
                summary = _summary(model, log.ids[0], item, elapsed)
                yield b"event: done\ndata: " + orjson.dumps(summary) + b"\n\n"
            else:
                yield b"data: " + orjson.dumps({"text": item}) + b"\n\n"
    except Exception as exc:  # the status line is sent: the failure can only be an event now
        log.write(None, time.perf_counter() - start, error=str(exc))
        yield b"event: error\ndata: " + orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}) + b"\n\n"


def _summary(model: LoadedModel, id_: str, made: Generation, elapsed_s: float) -> dict[str, Any]:
    return {
        "id": id_,
        "model": model.name,
        "version": model.version,
        "text": made.text,
        "finish_reason": made.finish_reason,
        "prompt_tokens": made.prompt_tokens,
        "completion_tokens": len(made.tokens),
        "latency_ms": round(elapsed_s * 1000, 3),
        "prompt_truncated": made.prompt_truncated,
    }


class _Log:
    """One generation's prediction-log row: the prompt and token counts as the record, the text as the
    prediction (the same columns for every row, failed ones too, so the log stays one table)."""

    def __init__(
        self,
        predlog: PredictionLogger,
        model: LoadedModel,
        prompt: str,
        sampling: Sampling,
        ids: list[str],
        at_ms: int,
        by: str,
        *,
        stream: bool,
    ) -> None:
        self.predlog, self.model, self.ids, self.at_ms, self.by = predlog, model, ids, at_ms, by
        self.record: dict[str, Any] = {
            "prompt": prompt,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "finish_reason": "error",
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "stream": stream,
        }

    def _args(self, made: Generation | None, elapsed_s: float, error: str | None) -> tuple[Any, dict[str, Any]]:
        record = dict(self.record)
        if made is not None:
            record.update(
                prompt_tokens=made.prompt_tokens, completion_tokens=len(made.tokens), finish_reason=made.finish_reason
            )
        kwargs = {
            "predictions": [None if made is None else made.text],
            "ids": self.ids,
            "at_ms": self.at_ms,
            "latency_ms": elapsed_s * 1000,
            "by": self.by,
            "error": error,
        }
        return [record], kwargs

    def write(self, made: Generation | None, elapsed_s: float, *, error: str | None = None) -> None:
        records, kwargs = self._args(made, elapsed_s, error)
        self.predlog.log(self.model.name, self.model.version, records, durable=error is None, **kwargs)

    async def write_async(self, made: Generation, elapsed_s: float) -> None:
        records, kwargs = self._args(made, elapsed_s, None)
        await self.predlog.log_async(self.model.name, self.model.version, records, **kwargs)
