"""Serving with several worker processes, and readiness: `keel serve --workers N` side by side for N
in 1..cores, on the model of bench/serving.py (a 100-tree LightGBM classifier on credit_data).

Per N and repeat: time from process start until /readyz answers 200 (the champion loaded and warm
in every worker), the latency of the first prediction after that against the median of the next 20
(goal: first <= 3x a warm one, since ready means warm), and throughput at 32 clients (bench/serving.py's load generator,
another process, keep-alive connections spread over the workers by the kernel). Goal: throughput
with N workers >= 0.8 x N x the one-worker figure while N <= the cores left beside the load
generator; on a machine with 2 cores the load generator takes one of them, so the figure printed
for N = 2 is what this machine allows, not the scaling of a server with cores of its own.

    OMP_NUM_THREADS=1 .venv/bin/python bench/serving_workers.py [--quick] [--workers 1 2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _common import verdict  # noqa: E402
from serving import BIN, MODEL_NAME, THREAD_ENV, free_port, prepare, run_load  # noqa: E402

PREDICT = f"/api/v1/models/{MODEL_NAME}/predict"


def start(home: Path, workers: int, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start `keel serve --workers N`; return it and the seconds until /readyz answered 200."""
    import httpx

    env = {k: v for k, v in {**os.environ, **THREAD_ENV}.items() if not k.startswith("KEEL_")}
    cmd = [str(BIN / "keel"), "--workspace", str(home), "serve", "--port", str(port), "--workers", str(workers)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    proc.kill()
    raise SystemExit(f"keel serve --workers {workers} was not ready in 180 s")


def first_prediction_ms(port: int, body: bytes) -> tuple[float, float]:
    """The first prediction's latency after ready, and the median of the next 20 (the client and
    its connection made beforehand with a /healthz request, so both measure the server alone)."""
    import httpx

    url = f"http://127.0.0.1:{port}"
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        client.get(url + "/healthz")
        times = []
        for _ in range(21):
            t = time.perf_counter()
            r = client.post(url + PREDICT, content=body, headers=headers)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
    return times[0], statistics.median(times[1:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workers", type=int, nargs="+", default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--repeats", type=int, default=None)
    a = p.parse_args()
    cores = os.cpu_count() or 1
    levels = a.workers or sorted({1, 2, cores})
    seconds = a.seconds or (1.0 if a.quick else 5.0)
    repeats = a.repeats or (1 if a.quick else 3)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in levels}
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare(Path(tmp))
        body_file = setup["body_files"]["keel"]
        for _ in range(repeats):
            for n in levels:
                port = free_port()
                proc, ready_s = start(setup["keel_home"], n, port)
                try:
                    first, warm = first_prediction_ms(port, body_file.read_bytes())
                    load = run_load(port, PREDICT, body_file, 32, seconds)
                finally:
                    stop(proc)
                results[n].append(
                    {"ready_s": ready_s, "first_ms": first, "warm_ms": warm, "rps_32": load["throughput_rps"]}
                )
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    base = med[levels[0]]["rps_32"] / levels[0]
    print(f"keel serve --workers N, {cores} cores, load generator beside it, medians of {repeats} repeat(s):")
    print(f"{'N':>3} {'ready s':>8} {'first ms':>9} {'warm ms':>8} {'req/s @32':>10} {'scaling':>8}  goals")
    for n, m in med.items():
        scaling = m["rps_32"] / base / n
        fits = n <= max(cores - 1, 1)
        goals = [f"first / warm {verdict(m['first_ms'] / m['warm_ms'], 3.0, fmt=lambda v: f'{v:g}x')}"]
        goals.append(
            f"scaling {verdict(scaling, 0.8, lower_is_better=False)}"
            if fits
            else "scaling: no core left for it beside the load generator (not judged)"
        )
        print(
            f"{n:>3} {m['ready_s']:>8.2f} {m['first_ms']:>9.2f} {m['warm_ms']:>8.2f} {m['rps_32']:>10.0f} {scaling:>8.2f}  "
            + "; ".join(goals)
        )
    out = BENCH_DIR / "results" / "serving_workers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cores": cores, "repeats": results, "medians": med}, indent=2))


if __name__ == "__main__":
    main()
