"""The demo's second act: the champion in production, watched.

    keel serve (uvicorn, loopback) <--HTTP-- held-out applications, then applications asking for
    30% larger loans --> prediction log + feedback (the true outcomes) --> monitor check
    --> drift and performance alerts --> a webhook receiver (standing in for Slack or a pager)
    and the server log

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

__all__ = ["LiveResult", "CheckSummary", "run_live", "SHIFT", "SHIFTED_COLUMNS", "WINDOW"]

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
class LiveResult:
    url: str
    checks: tuple[CheckSummary, ...]
    delivered: tuple[dict[str, Any], ...]  # the JSON bodies the webhook received
    open_alerts: int


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


def run_live(ws: Workspace, model: str, target: str, X: pd.DataFrame, y: pd.Series, console: Console, *, first_step: int) -> LiveResult:
    """Serve `model`'s champion, send two waves of `WINDOW` rows of `X` (the second shifted), send
    their true outcomes `y`, check after each wave, and deliver the alerts."""
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

    alerts = ws.monitoring.alerts.list(model=model, status="open")
    console.print(f"[bold]{first_step + 2} {'Alert':<10}[/]{len(alerts)} open alerts, each delivered to the on-call "
                  f"webhook ({len(receiver.received)} received) and the server log:")  # fmt: skip
    for a in alerts:
        console.print(f"{_INDENT}#{a.id} [{'red' if a.severity.value == 'critical' else 'yellow'}]{a.severity.value}[/] "
                      f"{escape(a.title)}")  # fmt: skip
    return LiveResult(server.url, tuple(checks), tuple(receiver.received), len(alerts))


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
    answer.raise_for_status()
    body = answer.json()
    psi = {v["feature"]: v["value"] for v in body["values"] if v["metric"] == "psi" and v["value"] is not None}
    top = max(psi, key=lambda f: psi[f]) if psi else "-"
    auc = next((v["value"] for v in body["values"] if v["metric"] == "roc_auc" and v["feature"] == ""), None)
    return CheckSummary(
        label=label, rows=body["run"]["rows"], labelled=body["run"]["labelled_rows"],
        drifted=tuple(body["drifted_features"]), top_feature=top, top_psi=psi.get(top, 0.0), roc_auc=auc,
        alerts=tuple(a["title"] for a in body["alerts"]),
    )  # fmt: skip


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
