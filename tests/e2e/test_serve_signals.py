"""`keel serve` stops cleanly on SIGTERM (what systemd, Docker and Kubernetes send): exit status 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from liveserver import announced_url

KEEL = str(Path(sys.executable).parent / "keel")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _serve(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [KEEL, "--workspace", str(tmp_path / "ws"), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    return proc, announced_url(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_cleanly_with_exit_status_0(tmp_path: Path, sig: signal.Signals) -> None:
    proc, url = _serve(tmp_path)
    try:
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"exit status {proc.returncode}; output:\n{output}"
    assert "Traceback" not in output
