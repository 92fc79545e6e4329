"""Acts 8 to 10: the champion in production, watched.

    keel serve (uvicorn, loopback) <--HTTP-- held-out applications, then applications asking for
    30% larger loans --> prediction log + feedback (the true outcomes) --> monitor check
    --> drift and performance alerts --> a webhook receiver (standing in for Slack or a pager)
    and the server log --> (act 11, keel.demo.retrain) the server's background loop retrains

Everything goes through the real paths: JSON over HTTP to the predict endpoint, the buffered
prediction log, the feedback endpoint, the monitor endpoint, and alert delivery over HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.demo._shared import INDENT, step
from keel.demo.retrain import RetrainSummary, print_retrain, retrain_while_serving
from keel.demo.serve import DemoServer, Receiver

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from keel.entities import Alert
    from keel.workspace import Workspace

__all__ = ["LiveResult", "CheckSummary", "run_live", "SHIFT", "SHIFTED_COLUMNS", "WINDOW"]

WINDOW = 500  # predictions per monitor check
BATCH = 100  # records per HTTP request
SHIFT = 1.3  # the second wave asks for 30% larger loans on 30% dearer goods
SHIFTED_COLUMNS = ("Amount", "Price")


@dataclass(frozen=True)
class CheckSummary:
    label: str
    rows: int
    labelled: int
    drifted: tuple[str, ...]
    top_feature: str
    top_psi: float
    roc_auc: float | None
    alerts: tuple[str, ...]  # titles of the alerts this check opened or updated


@dataclass(frozen=True)
class LiveResult:
    url: str
    checks: tuple[CheckSummary, ...]
    delivered: tuple[dict[str, Any], ...]  # the JSON bodies the webhook received
    open_alerts: int
    retrain: RetrainSummary | None = None
    server: DemoServer | None = field(default=None, compare=False, repr=False)  # still serving (keep_serving)


def run_live(
    ws: Workspace,
    model: str,
    target: str,
    X: pd.DataFrame,
    y: pd.Series,
    console: Console,
    *,
    first_step: int,
    project: Any = None,
    sock: Any = None,
    keep_serving: bool = False,
    log: str = "the server log",
) -> LiveResult:
    """Serve `model`'s champion, send two waves of `WINDOW` rows of `X` (the second shifted), send
    their true outcomes `y`, check after each wave, and deliver the alerts. With a model `project`
    (keel.Project), then let the server's background loop retrain on its own while traffic goes on.

    The server listens on `sock` (default: a free loopback port); with `keep_serving` it is left
    running and returned in `LiveResult.server` (call its `keep_serving(ws)`), else closed."""
    import httpx

    if len(X) < 2 * WINDOW:
        raise ValueError(f"the live demo needs {2 * WINDOW} held-out rows, got {len(X)}")
    ws.monitoring.watch(model, window_rows=WINDOW, target=target, schedule_s=300)
    receiver = Receiver()
    _add_channels(ws, receiver)
    server = DemoServer(ws, sock)
    checks = []
    try:
        console.print(
            f"{step(first_step, 'Serve')}{server.url}/api/v1/models/{model}/predict  "
            f"[dim](uvicorn on loopback; every prediction logged)[/]"
        )
        with httpx.Client(base_url=server.url, timeout=60) as http:
            waves = _waves(X, y)
            shifted = waves[1][1]  # the drifted rows: the retraining keeps serving them
            for label, rows, outcomes in waves:
                checks.append(_wave(http, server, model, label, rows, outcomes))
            retrained = (
                retrain_while_serving(ws, server, http, model, shifted, project) if project is not None else None
            )
        _print_checks(checks, console, first_step + 1)
    except BaseException:
        server.close()
        raise
    finally:
        if not keep_serving:
            server.close()
        ws.monitoring.alerts.remove_channel("demo-on-call")  # the receiver goes away with the demo
        receiver.close()
    alerts = [a for a in ws.monitoring.alerts.list(model=model, status="all") if a.rule != "retraining-failed"]
    _print_alerts(alerts, len(receiver.received), log, console, first_step + 2)
    if retrained is not None:
        print_retrain(retrained, model, console, first_step + 3)
    return LiveResult(
        server.url, tuple(checks), tuple(receiver.received), len(alerts), retrained, server if keep_serving else None
    )


def _add_channels(ws: Workspace, receiver: Receiver) -> None:
    """Deliver alerts to `receiver` (replacing the webhook a previous demo left) and the server log."""
    channels = {c.name for c in ws.monitoring.alerts.channels()}
    if "demo-on-call" in channels:
        ws.monitoring.alerts.remove_channel("demo-on-call")
    ws.monitoring.alerts.add_channel("demo-on-call", "webhook", url=receiver.url)
    if "server-log" not in channels:
        ws.monitoring.alerts.add_channel("server-log", "log")


def _waves(X: pd.DataFrame, y: pd.Series) -> list[tuple[str, pd.DataFrame, pd.Series]]:
    """The two waves of traffic, (label, rows, outcomes): held-out rows as they are, then the next
    `WINDOW` rows with `SHIFTED_COLUMNS` scaled by `SHIFT`."""
    shifted = X.iloc[WINDOW : 2 * WINDOW].copy()
    for column in SHIFTED_COLUMNS:
        shifted[column] = (shifted[column] * SHIFT).round()
    return [
        ("held-out applications", X.iloc[:WINDOW], y.iloc[:WINDOW]),
        (f"loans {round((SHIFT - 1) * 100)}% larger", shifted, y.iloc[WINDOW : 2 * WINDOW]),
    ]


def _print_checks(checks: list[CheckSummary], console: Console, number: int) -> None:
    console.print(
        f"{step(number, 'Monitor')}{'traffic':<24}{'rows':>5}{'labelled':>10}  {'max PSI':<18}{'AUC':>6}  drifted"
    )
    for c in checks:
        console.print(
            f"{INDENT}{c.label:<24}{c.rows:>5}{c.labelled:>10}  {c.top_psi:<5.2f}{c.top_feature:<13}"
            f"{fmt(c.roc_auc):>6}  {', '.join(c.drifted) or '-'}"
        )


def _print_alerts(alerts: list[Alert], received: int, log: str, console: Console, number: int) -> None:
    from rich.markup import escape

    console.print(
        f"{step(number, 'Alert')}{len(alerts)} alerts raised, each delivered to the on-call "
        f"webhook ({received} received) and {escape(log)}:"
    )
    for a in alerts:
        console.print(
            f"{INDENT}#{a.id} [{'red' if a.severity.value == 'critical' else 'yellow'}]{a.severity.value}[/] "
            f"{escape(a.title)}"
        )


def _wave(
    http: Any, server: DemoServer, model: str, label: str, rows: pd.DataFrame, outcomes: pd.Series
) -> CheckSummary:
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")  # JSON has no NaN
    ids: list[str] = []
    for start in range(0, len(records), BATCH):
        answer = http.post(f"/api/v1/models/{model}/predict", json={"records": records[start : start + BATCH]})
        answer.raise_for_status()
        ids += [p["id"] for p in answer.json()["predictions"]]
    from keel.server.state import state_of

    state_of(server.app).predlog.flush()  # the server writes every few seconds; the demo does not wait
    feedback = [{"id": i, "label": str(label)} for i, label in zip(ids, outcomes, strict=True)]
    http.post(f"/api/v1/models/{model}/feedback", json={"feedback": feedback}).raise_for_status()
    answer = http.post(f"/api/v1/models/{model}/monitor/run")
    answer.raise_for_status()  # 202: the check runs as a job
    job = _finished(http, answer.json())
    body = http.get(job["run_url"]).json()
    alerts = {a["id"]: a for a in http.get("/api/v1/alerts", params={"model": model, "status": "all"}).json()}
    body["alerts"] = [alerts[i] for i in job["result"]["alerts"] if i in alerts]
    psi = {v["feature"]: v["value"] for v in body["values"] if v["metric"] == "psi" and v["value"] is not None}
    top = max(psi, key=lambda f: psi[f]) if psi else "-"
    auc = next((v["value"] for v in body["values"] if v["metric"] == "roc_auc" and v["feature"] == ""), None)
    return CheckSummary(
        label=label,
        rows=body["run"]["rows"],
        labelled=body["run"]["labelled_rows"],
        drifted=tuple(body["drifted_features"]),
        top_feature=top,
        top_psi=psi.get(top, 0.0),
        roc_auc=auc,
        alerts=tuple(a["title"] for a in body["alerts"]),
    )


def _finished(http: Any, job: dict[str, Any], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Poll a job the server answered 202 with until it finished; raise if it failed."""
    from keel.errors import KeelError

    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        if time.monotonic() > deadline:
            raise KeelError(f"job {job['id']} ({job['kind']}) still {job['status']} after {timeout_s:g} s")
        time.sleep(0.1)
        answer = http.get(job["url"])
        answer.raise_for_status()
        job = answer.json()
    if job["status"] != "succeeded":
        raise KeelError(f"job {job['id']} ({job['kind']}) failed: {job['error']}")
    return job


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
