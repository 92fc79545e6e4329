"""The demo's second act: the champion in production, watched.

    keel serve (uvicorn, loopback) <--HTTP-- held-out applications, then applications asking for
    30% larger loans --> prediction log + feedback (the true outcomes) --> monitor check
    --> drift and performance alerts --> a webhook receiver (standing in for Slack or a pager)
    and the server log --> the server's background loop sees the alerts and queues a retraining
    job (the model project: reference + labelled production data) --> the challenger is judged
    against the champion on the newest production rows and promoted, while requests keep coming

Everything goes through the real paths: JSON over HTTP to the predict endpoint, the buffered
prediction log, the feedback endpoint, the monitor endpoint, and alert delivery over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from keel._workspace import Workspace

__all__ = ["LiveResult", "CheckSummary", "RetrainSummary", "run_live", "SHIFT", "SHIFTED_COLUMNS", "WINDOW"]

WINDOW = 500  # predictions per monitor check
BATCH = 100  # records per HTTP request
SHIFT = 1.3  # the second wave asks for 30% larger loans on 30% dearer goods
SHIFTED_COLUMNS = ("Amount", "Price")
_INDENT = " " * 12


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
class RetrainSummary:
    job: int | None
    outcome: str | None
    version: int | None
    champion_before: int | None
    metrics: dict[str, Any]
    data: dict[str, Any]
    requests: int  # predictions asked for while the retraining ran
    failed: int
    served_by: dict[int, int]  # model version -> requests it answered


@dataclass(frozen=True)
class LiveResult:
    url: str
    checks: tuple[CheckSummary, ...]
    delivered: tuple[dict[str, Any], ...]  # the JSON bodies the webhook received
    open_alerts: int
    retrain: RetrainSummary | None = None


class _Receiver:
    """A webhook endpoint on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/on-call"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server:
    """`keel serve`'s application under uvicorn in a thread, on a free loopback port."""

    def __init__(self, ws: Workspace) -> None:
        import uvicorn

        from keel.server import create_app

        self.app = create_app(ws)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False, lifespan="on"))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo's server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True  # shutdown writes the prediction log's last rows
        self.thread.join(timeout=30)


def run_live(ws: Workspace, model: str, target: str, X: pd.DataFrame, y: pd.Series, console: Console, *, first_step: int,
             project: Any = None) -> LiveResult:  # fmt: skip
    """Serve `model`'s champion, send two waves of `WINDOW` rows of `X` (the second shifted), send
    their true outcomes `y`, check after each wave, and deliver the alerts. With a model `project`
    (keel.Project), then let the server's background loop retrain on its own while traffic goes on."""
    import httpx

    if len(X) < 2 * WINDOW:
        raise ValueError(f"the live demo needs {2 * WINDOW} held-out rows, got {len(X)}")
    ws.monitoring.watch(model, window_rows=WINDOW, target=target, schedule_s=300)
    receiver = _Receiver()
    channels = {c.name for c in ws.monitoring.alerts.channels()}
    if "demo-on-call" in channels:
        ws.monitoring.alerts.remove_channel("demo-on-call")
    ws.monitoring.alerts.add_channel("demo-on-call", "webhook", url=receiver.url)
    if "server-log" not in channels:
        ws.monitoring.alerts.add_channel("server-log", "log")
    server = _Server(ws)
    checks = []
    try:
        console.print(f"[bold]{first_step} {'Serve':<10}[/]{server.url}/api/v1/models/{model}/predict  "
                      f"[dim](uvicorn on loopback; every prediction logged)[/]")  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=60) as http:
            waves = [("held-out applications", X.iloc[:WINDOW], y.iloc[:WINDOW])]
            shifted = X.iloc[WINDOW : 2 * WINDOW].copy()
            for column in SHIFTED_COLUMNS:
                shifted[column] = (shifted[column] * SHIFT).round()
            waves.append((f"loans {round((SHIFT - 1) * 100)}% larger", shifted, y.iloc[WINDOW : 2 * WINDOW]))
            for label, rows, outcomes in waves:
                checks.append(_wave(http, server, model, label, rows, outcomes))
            retrained = _retrain(ws, server, http, model, shifted, project) if project is not None else None
        console.print(f"[bold]{first_step + 1} {'Monitor':<10}[/]{'traffic':<24}{'rows':>5}{'labelled':>10}  "
                      f"{'max PSI':<18}{'AUC':>6}  drifted")  # fmt: skip
        for c in checks:
            console.print(f"{_INDENT}{c.label:<24}{c.rows:>5}{c.labelled:>10}  {c.top_psi:<5.2f}{c.top_feature:<13}"
                          f"{_fmt(c.roc_auc):>6}  {', '.join(c.drifted) or '-'}")  # fmt: skip
    finally:
        server.close()
        ws.monitoring.alerts.remove_channel("demo-on-call")  # the receiver goes away with the demo
        receiver.close()
    from rich.markup import escape

    alerts = [a for a in ws.monitoring.alerts.list(model=model, status="all") if a.rule != "retraining-failed"]
    console.print(f"[bold]{first_step + 2} {'Alert':<10}[/]{len(alerts)} alerts raised, each delivered to the on-call "
                  f"webhook ({len(receiver.received)} received) and the server log:")  # fmt: skip
    for a in alerts:
        console.print(f"{_INDENT}#{a.id} [{'red' if a.severity.value == 'critical' else 'yellow'}]{a.severity.value}[/] "
                      f"{escape(a.title)}")  # fmt: skip
    if retrained is not None:
        _print_retrain(retrained, model, console, first_step + 3)
    return LiveResult(server.url, tuple(checks), tuple(receiver.received), len(alerts), retrained)


def _retrain(ws: Workspace, server: _Server, http: Any, model: str, rows: pd.DataFrame, project: Any) -> RetrainSummary:
    """Start keel serve's background loop and keep asking for predictions until the retraining it
    starts (the alerts are its trigger) has finished and its outcome is being served."""
    from collections import Counter

    from keel.server.scheduler import MonitorScheduler

    ws.retraining.save(project)
    champion_before = ws.models.get(f"{model}@champion").version
    loop = MonitorScheduler(ws, server.app.state.monitor_gauges, tick_s=0.2)
    loop.start()
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    served: Counter[int] = Counter()
    requests = failed = 0
    job = None
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            answer = http.post(f"/api/v1/models/{model}/predict", json={"records": [records[requests % len(records)]]})
            requests += 1
            if answer.status_code == 200:
                served[answer.json()["version"]] += 1
            else:
                failed += 1
            jobs = ws.jobs.list(kind="retrain", limit=1)
            job = jobs[0] if jobs else None
            if job is not None and job.status in ("succeeded", "failed"):
                target = (job.result or {}).get("version") if (job.result or {}).get("outcome") == "promoted" else champion_before
                if job.status == "failed" or served[target] >= 20:  # the outcome is what answers now
                    break
            time.sleep(0.005)
    finally:
        loop.stop()
    decision = ws.retraining.decisions(model, limit=1)
    d = decision[0] if decision else None
    return RetrainSummary(
        job=job.id if job else None, outcome=d.outcome if d else None, version=d.version if d else None,
        champion_before=champion_before, metrics=(d.evidence.get("metrics") or {}) if d else {},
        data=(d.evidence.get("data") or {}) if d else {}, requests=requests, failed=failed, served_by=dict(served),
    )  # fmt: skip


def _print_retrain(r: RetrainSummary, model: str, console: Console, step: int) -> None:
    if r.outcome is None:
        console.print(f"[bold]{step} {'Retrain':<10}[/]no retraining started within the demo's time")
        return
    console.print(f"[bold]{step} {'Retrain':<10}[/]job {r.job}, queued by the server on the alerts: {model}@{r.version} trained on "
                  f"{r.data.get('dataset')} ({r.data.get('train_rows', 0):,} rows: reference + labelled production)")  # fmt: skip
    challenger, champion = r.metrics.get("challenger") or {}, r.metrics.get("champion") or {}
    if "roc_auc" in challenger and "roc_auc" in champion:
        console.print(f"{_INDENT}gate on the newest {r.data.get('holdout_rows')} production rows: AUC {challenger['roc_auc']:.3f} "
                      f"vs champion @{r.champion_before} {champion['roc_auc']:.3f} -> [bold]{r.outcome.replace('_', ' ')}[/]")  # fmt: skip
    versions = ", ".join(f"v{v}: {n}" for v, n in sorted(r.served_by.items()))
    console.print(f"{_INDENT}{r.requests} predictions answered meanwhile ({versions}), {r.failed} failed"
                  + ("; the alerts that started it are resolved" if r.outcome == "promoted" else ""))  # fmt: skip


def _wave(http: Any, server: _Server, model: str, label: str, rows: pd.DataFrame, outcomes: pd.Series) -> CheckSummary:
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")  # JSON has no NaN
    ids: list[str] = []
    for start in range(0, len(records), BATCH):
        answer = http.post(f"/api/v1/models/{model}/predict", json={"records": records[start : start + BATCH]})
        answer.raise_for_status()
        ids += [p["id"] for p in answer.json()["predictions"]]
    server.app.state.predlog.flush()  # the server writes every few seconds; the demo does not wait
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
        label=label, rows=body["run"]["rows"], labelled=body["run"]["labelled_rows"],
        drifted=tuple(body["drifted_features"]), top_feature=top, top_psi=psi.get(top, 0.0), roc_auc=auc,
        alerts=tuple(a["title"] for a in body["alerts"]),
    )  # fmt: skip


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


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
