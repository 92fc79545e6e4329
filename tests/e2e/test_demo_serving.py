"""`keel demo` as a user runs it: the story's server is the one left serving, on the one port it
announced; a busy port is one error line before anything runs; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

KEEL = [str(Path(sys.executable).parent / "keel")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_busy_port_is_one_error_line_before_the_story(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*KEEL, "demo", "--workspace", str(tmp_path / "ws"), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert (
        done.stderr.strip().startswith("error:")
        and f"Port {port}" in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )
    assert "Keel demo" not in done.stdout and not (tmp_path / "ws").exists()  # nothing ran, nothing written


@pytest.mark.timeout(600)
def test_the_demo_serves_its_story_and_the_dashboard_on_one_port(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [*KEEL, "demo", "--workspace", str(tmp_path / "ws"), "--port", str(port), "--through", "11"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 480
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Dashboard:"):
                break
        text = "".join(lines)
        served = re.search(r"^8 Serve\s+(http://127\.0\.0\.1:(\d+))/", text, re.M)
        assert served is not None, text
        assert int(served.group(2)) == port  # the story ran on the port the dashboard is served on
        assert f"Dashboard: http://127.0.0.1:{port}/" in text
        assert "Serving credit-risk@3 (alias champion)" in text
        assert "11 Retrain" in text and "12 Cause" not in text  # --through 11: the later acts are left out
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
        page = httpx.get(f"http://127.0.0.1:{port}/models/credit-risk", timeout=30)
        assert page.status_code == 200 and "not checked yet" in page.text  # v3 has no check of its own yet
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/models/credit-risk/predict",
            timeout=30,
            json={
                "records": [
                    {
                        "Seniority": 9,
                        "Home": "rent",
                        "Time": 60,
                        "Age": 30,
                        "Marital": "married",
                        "Records": "no",
                        "Job": "freelance",
                        "Expenses": 73,
                        "Income": 129,
                        "Assets": 0,
                        "Debt": 0,
                        "Amount": 800,
                        "Price": 846,
                    }
                ]
            },
        )
        assert answer.status_code == 200 and answer.json()["version"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, "".join(lines)
