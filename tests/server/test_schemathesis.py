"""Property-based API tests: schemathesis sends schema-derived requests, valid and invalid, to
every operation of the app in-process, with every role's token. No answer may be a 500 or a
status the OpenAPI schema does not declare.

Bounded so the module stays within a minute or two on two cores: a few examples per operation
and generation mode, no example database, derandomized (the same requests every run), no
shrinking. A failure names the request; rerun with more examples (EXAMPLES) to dig deeper.
"""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

import keel

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.timeout(300)]

BASE_URL = "http://127.0.0.1"  # a loopback Host, which the server's Host check accepts
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE

# Examples per operation: (generated paths, valid), (generated paths, invalid), (known entities, valid).
# Admin gets the most. A lower role is refused (403) before its body is read, and without a token
# every operation is a 401, so a couple of examples show those answers are declared.
EXAMPLES: dict[str | None, tuple[int, int, int]] = {
    "admin": (4, 4, 6),
    "writer": (2, 2, 3),
    "predictor": (1, 0, 2),
    "reader": (1, 0, 1),
    None: (1, 0, 0),
}

# Operations left out, and why. Keep this list short: every other operation is fuzzed.
EXCLUDED: dict[tuple[str, str], str] = {}

_PARAM = re.compile(r"{(\w+)}")


def _operations(app: Any) -> list[Any]:
    # from_dict, not from_asgi: /openapi.json itself needs a token once tokens exist.
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if (op.method.upper(), op.path) not in EXCLUDED]


def _known(path: str, run_id: str) -> dict[str, str] | None:
    """Path parameters naming entities that exist, so that examples get past 'not found'."""
    dataset = "/datasets/" in path
    values = {
        "name": "cancer" if dataset else "tumor",
        "ref": "cancer@1" if dataset else "tumor@1",
        "other": "cancer@latest",
        "alias": "fuzzed",
    }
    if path.startswith("/api/v1/runs/"):  # a monitor's run_id is a number, not a tracking run
        values["run_id"] = run_id
    names = _PARAM.findall(path)
    if not names or any(n not in values for n in names):
        return None
    return {n: values[n] for n in names}


def _fuzz(
    op: Any,
    mode: GenerationMode,
    examples: int,
    headers: dict[str, str],
    failures: list[str],
    path_parameters: dict[str, str] | None = None,
) -> None:
    if examples == 0:
        return

    @hypothesis.settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: report, don't minimise
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=op.as_strategy(mode, path_parameters=path_parameters))
    def run(case: Any) -> None:
        body = "-" if isinstance(case.body, NotSet) else repr(case.body)[:300]
        request = f"{case.method} {case.formatted_path} query={case.query} body={body}"
        try:
            # The in-process client re-raises what the app did not handle: that is a 500.
            response = case.call(base_url=BASE_URL, headers=headers)
        except Exception as exc:  # noqa: BLE001 - any of them is the failure this test looks for
            failures.append(f"{request} [{mode.value}] -> 500: {type(exc).__name__}: {exc}"[:2000])
            return
        try:
            case.validate_response(
                response,
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                headers=headers,
            )
        except (AssertionError, FailureGroup) as exc:  # collected, so that one run reports every operation at fault
            found = "; ".join(getattr(f, "title", str(f)) for f in getattr(exc, "exceptions", [exc]))
            failures.append(f"{request} [{mode.value}] -> {response.status_code} {response.text[:300]}: {found}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        assert mode is NEGATIVE, f"{op.method.upper()} {op.path}: no valid request can be generated"
        # An operation with no parameters and no body has no invalid request to send.


@pytest.mark.parametrize("role", list(EXAMPLES))
def test_no_operation_answers_500_or_an_undeclared_status(
    served_ws: keel.Workspace, tokens: dict[str, str], role: str | None
) -> None:
    from keel.server import create_app

    app = create_app(served_ws, token_cache_s=60.0)
    headers = {} if role is None else {"Authorization": f"Bearer {tokens[role]}"}
    run = served_ws.runs.start("fuzzed")
    run.detach()  # stays running, so examples may log to it
    generated, invalid, known = EXAMPLES[role]
    failures: list[str] = []
    operations = _operations(app)
    assert len(operations) > 30
    for op in operations:
        _fuzz(op, POSITIVE, generated, headers, failures)
        _fuzz(op, NEGATIVE, invalid, headers, failures)
        fixed = _known(op.path, run.id)
        if fixed is not None:
            _fuzz(op, POSITIVE, known, headers, failures, path_parameters=fixed)
    assert not failures, f"{len(failures)} failure(s), the first 40:\n" + "\n\n".join(failures[:40])
