"""`keel serve`, `keel token` and the demo's serving end, through the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from keel.cli import app

KEEL = str(Path(sys.executable).parent / "keel")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} never printed; output was:\n{''.join(seen)}")


def test_demo_ends_by_serving_the_champion_and_printing_the_dashboard(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [KEEL, "demo", "--workspace", str(tmp_path / "ws"), "--port", "0", "--through", "11"],  # the serving acts
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        line = _wait_for_line(proc, "Dashboard: http://", timeout_s=120)
        url = line.split("Dashboard: ")[1].split()[0].rstrip("/")
        assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        champion = httpx.get(f"{url}/api/v1/models/credit-risk@champion", timeout=10).json()
        example = champion["input_example"][:2]
        r = httpx.post(f"{url}/api/v1/models/credit-risk/predict", json={"records": example}, timeout=30)
        assert r.status_code == 200
        assert r.json()["version"] == champion["version"]
        assert set(r.json()["predictions"][0]["probabilities"]) == {"bad", "good"}
        assert httpx.get(f"{url}/", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    r = subprocess.run(
        [KEEL, "--workspace", ws, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert r.returncode == 1
    assert "needs API tokens" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_token_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    ws = str(tmp_path / "ws")
    created = runner.invoke(app, ["--workspace", ws, "token", "create", "ci-bot", "--role", "writer", "--json"])
    assert created.exit_code == 0, created.output
    import json

    info = json.loads(created.stdout)
    assert info["token"].startswith("keel_") and info["role"] == "writer"
    listed = json.loads(runner.invoke(app, ["--workspace", ws, "token", "list", "--json"]).stdout)
    assert [t["name"] for t in listed] == ["ci-bot"]
    assert info["token"] not in json.dumps(listed)
    assert runner.invoke(app, ["--workspace", ws, "token", "revoke", info["prefix"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["--workspace", ws, "token", "list", "--json"]).stdout) == []
    bad = runner.invoke(app, ["--workspace", ws, "token", "create", "x", "--role", "root"])
    assert bad.exit_code == 1 and "Unknown role" in bad.output


@pytest.mark.parametrize("fmt", ["json"])
def test_serve_logs_json_lines_with_request_ids(tmp_path: Path, fmt: str) -> None:
    ws = str(tmp_path / "ws")
    assert (
        subprocess.run([KEEL, "--workspace", ws, "init"], capture_output=True, env=_env(), timeout=60).returncode == 0
    )
    proc = subprocess.Popen(
        [KEEL, "--workspace", ws, "serve", "--port", "0", "--log-format", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        line = _wait_for_line(proc, "Dashboard: http://", timeout_s=60)
        url = line.split("Dashboard: ")[1].split()[0].rstrip("/")
        r = httpx.get(f"{url}/api/v1/models", headers={"X-Request-ID": "req-abc-123"}, timeout=10)
        assert r.headers["x-request-id"] == "req-abc-123"
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    import json

    records = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    hits = [rec for rec in records if rec.get("request_id") == "req-abc-123"]
    assert hits and hits[0]["path"] == "/api/v1/models" and hits[0]["status"] == 200
