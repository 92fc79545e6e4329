"""What the browser tests share: Debian's Chromium (driven by Playwright through executable_path, so no
browser download is needed; see RECIPES.md), its launch flags, and why it cannot run here, if it cannot."""

from __future__ import annotations

import os
import subprocess

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_problem"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_problem() -> str | None:
    """Why Chromium cannot run here, or None when it starts."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    try:
        done = subprocess.run(
            [CHROMIUM, *CHROMIUM_ARGS, "--dump-dom", "about:blank"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{CHROMIUM} does not start: {exc}"
    if done.returncode != 0:
        return f"{CHROMIUM} does not start (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    return None
