"""Reading a model project (`keel.yaml` or a dict) into the dataclasses of `project.py`: each section's
keys and values checked, and every error located (`keel.yaml: gate.tolerance.accuracy: expected ...`).

Pure: nothing here imports the paths a project names (`project.check_imports` does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from keel.errors import InvalidInputError
from keel.refs import check_name
from keel.retraining.project import (
    DATA_POLICIES,
    EDGE_ON_FAILURE,
    EDGE_QUANTIZE,
    EDGE_TARGETS,
    METRICS,
    TRIGGERS,
    Data,
    EdgeLoop,
    EdgeTarget,
    Estimator,
    Evaluation,
    Gate,
    Project,
    ProjectError,
    Retraining,
    Split,
    Tuning,
)

__all__ = ["At", "parse"]

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


class At:
    """Where we are in the file, for messages: 'keel.yaml: gate.tolerance.accuracy'."""

    def __init__(self, source: str, path: str = "") -> None:
        self.source, self.path = source, path

    def __truediv__(self, key: str | int) -> At:
        if isinstance(key, int):
            return At(self.source, f"{self.path}[{key}]")
        return At(self.source, f"{self.path}.{key}" if self.path else key)

    def fail(self, message: str) -> ProjectError:
        return ProjectError(f"{self.source}: {self.path or 'top level'}: {message}")


def _mapping(value: Any, at: At, known: set[str], *, required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(value, Mapping):
        raise at.fail(f"expected a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str) or key not in known:
            raise (at / str(key)).fail(f"unknown key; expected one of: {', '.join(sorted(known))}")
    for key in sorted(required):
        if key not in value:
            raise at.fail(f"missing required key '{key}'")
    return dict(value)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _str(value: Any, at: At) -> str:
    if not isinstance(value, str) or not value.strip():
        raise at.fail(f"expected a non-empty string, got {_kind(value)}")
    return value.strip()


def _num(value: Any, at: At, *, lo: float | None = None, hi: float | None = None, what: str = "a number") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise at.fail(f"expected {what}, got {_kind(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise at.fail(f"expected {what}, got {value!r}")
    return float(value)


def _bool(value: Any, at: At) -> bool:
    if not isinstance(value, bool):
        raise at.fail(f"expected true or false, got {_kind(value)}")
    return value


def _list(value: Any, at: At) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise at.fail(f"expected a list, got {_kind(value)}")
    return value


def _name(value: Any, at: At, what: str) -> str:
    text = _str(value, at)
    try:
        check_name(text.split("@", 1)[0], what=what)
    except InvalidInputError as exc:
        raise at.fail(str(exc)) from None
    return text


def parse(raw: Any, source: str) -> Project:
    """The project in `raw` (a mapping, as from YAML); a ProjectError names the first wrong key or value."""
    top = At(source)
    doc = _mapping(
        raw,
        top,
        {
            "model",
            "data",
            "estimator",
            "evaluation",
            "gate",
            "monitoring",
            "retraining",
            "tuning",
            "explain",
            "edge",
            "policy",
            "lm",
        },
        required={"model", "data"}
        if {"policy", "lm"} & set(raw if isinstance(raw, Mapping) else {})
        else {"model", "data", "estimator"},
    )
    model = _name(doc["model"], top / "model", "model name")
    if "@" in model:
        raise (top / "model").fail("a model name, without '@'")
    if "lm" in doc:  # a language model project: a corpus, its own sections (keel.retraining._project_lm)
        from keel.retraining._project_lm import lm_project  # it imports this module

        return lm_project(doc, top, model, source)
    data = _data(doc["data"], top / "data")
    if "policy" in doc:
        from keel.retraining._project_policy import policy_sections  # it imports this module

        policy, estimator, evaluation = policy_sections(doc, top, model)
    else:
        policy = None
        estimator = _estimator(doc["estimator"], top / "estimator")
        evaluation = _evaluation(doc.get("evaluation", {}), top / "evaluation")
        if "cost" in evaluation.metrics:
            raise (top / "evaluation").fail("'cost' is the metric of policy projects (a `policy:` section)")
        if "perplexity" in evaluation.metrics:
            raise (top / "evaluation").fail("'perplexity' is the metric of language model projects (an `lm:` section)")
    gate = _gate(doc.get("gate", {}), top / "gate", evaluation)
    monitoring, rules = _monitoring(doc.get("monitoring", {}), top / "monitoring")
    retraining = _retraining(doc.get("retraining", {}), top / "retraining")
    tuning = _tuning(doc["tuning"], top / "tuning") if doc.get("tuning") is not None else None
    explain = _explain(doc.get("explain", {}), top / "explain")
    edge = _edge(doc["edge"], top / "edge") if doc.get("edge") is not None else None
    return Project(
        model, data, estimator, evaluation, gate, monitoring, rules, retraining, tuning, explain, edge, policy, source
    )


def _edge(raw: Any, at: At) -> EdgeLoop:
    from keel.edge.mcu import MCUS  # the parts a build can be sized for (compute, below this package)

    e = _mapping(raw, at, {"targets", "min_agreement", "max_abs_diff", "on_failure", "qemu"}, required={"targets"})
    items = _list(e["targets"], at / "targets")
    if not items:
        raise (at / "targets").fail("expected at least one target such as {target: c, quantize: int8, mcu: cortex-m4}")
    targets = []
    for i, item in enumerate(items):
        where = at / "targets" / i
        t = _mapping(item, where, {"target", "quantize", "mcu", "min_agreement", "max_abs_diff"})
        for key, allowed, default in (
            ("target", EDGE_TARGETS, "c"),
            ("quantize", EDGE_QUANTIZE, "float32"),
            ("mcu", tuple(MCUS), "cortex-m4"),
        ):
            if t.get(key, default) not in allowed:
                raise (where / key).fail(f"expected one of {', '.join(allowed)}, got {_kind(t[key])}")
        targets.append(
            EdgeTarget(
                t.get("target", "c"),
                t.get("quantize", "float32"),
                t.get("mcu", "cortex-m4"),
                _share(t.get("min_agreement"), where / "min_agreement"),
                _diff(t.get("max_abs_diff"), where / "max_abs_diff"),
            )
        )
    labels = [t.label for t in targets]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise (at / "targets").fail(f"{', '.join(twice)} named more than once")
    on_failure = e.get("on_failure", "gate")
    if on_failure not in EDGE_ON_FAILURE:
        raise (at / "on_failure").fail(f"expected one of {', '.join(EDGE_ON_FAILURE)}, got {_kind(on_failure)}")
    return EdgeLoop(
        tuple(targets),
        1.0 if e.get("min_agreement") is None else float(_num(e["min_agreement"], at / "min_agreement", lo=0, hi=1)),
        _diff(e.get("max_abs_diff"), at / "max_abs_diff"),
        on_failure,
        _bool(e.get("qemu", True), at / "qemu"),
    )


def _share(value: Any, at: At) -> float | None:
    return None if value is None else _num(value, at, lo=0.0, hi=1.0, what="a share between 0 and 1")


def _diff(value: Any, at: At) -> float | None:
    return None if value is None else _num(value, at, lo=0.0, what="a number >= 0")


def _explain(raw: Any, at: At) -> dict[str, Any]:
    e = _mapping(raw, at, {"display"})
    display: dict[str, dict[str, str]] = {}
    for feature, spec in (e.get("display") or {}).items():
        d = _mapping(spec, at / "display" / str(feature), {"name", "unit"})
        display[str(feature)] = {k: _str(v, at / "display" / str(feature) / k) for k, v in d.items()}
    return {"display": display} if display else {}


def _tuning(raw: Any, at: At) -> Tuning:
    t = _mapping(raw, at, {"params", "trials", "seed"}, required={"params"})
    params = t["params"]
    if not isinstance(params, Mapping) or not params:
        raise (at / "params").fail(f"expected a mapping of parameter names to choices or ranges, got {_kind(params)}")
    space: dict[str, Any] = {}
    for name, spec in params.items():
        where = at / "params" / str(name)
        if isinstance(spec, list):
            if not spec or not all(v is None or isinstance(v, str | int | float | bool) for v in spec):
                raise where.fail("expected a non-empty list of plain values")
            space[str(name)] = list(spec)
            continue
        r = _mapping(spec, where, {"low", "high", "log", "int"}, required={"low", "high"})
        low, high = _num(r["low"], where / "low"), _num(r["high"], where / "high")
        if not low < high:
            raise where.fail(f"expected low < high, got {low!r} and {high!r}")
        log = _bool(r.get("log", False), where / "log")
        if log and low <= 0:
            raise (where / "low").fail("a log range needs low > 0")
        space[str(name)] = {"low": low, "high": high, "log": log, "int": _bool(r.get("int", False), where / "int")}
    trials = int(_num(t.get("trials", 8), at / "trials", lo=1, hi=1000, what="an integer between 1 and 1000"))
    seed = int(_num(t.get("seed", 0), at / "seed", lo=0, what="an integer >= 0"))
    return Tuning(space, trials, seed)


def _data(raw: Any, at: At) -> Data:
    d = _mapping(raw, at, {"dataset", "target", "features", "split"}, required={"dataset", "target"})
    features = None
    if "features" in d:
        items = _list(d["features"], at / "features")
        features = tuple(_str(f, at / "features" / i) for i, f in enumerate(items))
        if not features:
            raise (at / "features").fail(
                "expected at least one feature (or leave the key out: every column but the target)"
            )
        if len(set(features)) != len(features):
            raise (at / "features").fail("lists a feature twice")
    target = _str(d["target"], at / "target")
    if features and target in features:
        raise (at / "features").fail(f"includes the target {target!r}")
    split = Split()
    if "split" in d:
        s = _mapping(d["split"], at / "split", {"test_fraction", "seed", "stratify"})
        split = Split(
            test_fraction=_num(
                s.get("test_fraction", 0.25),
                at / "split" / "test_fraction",
                lo=0.05,
                hi=0.5,
                what="a fraction between 0.05 and 0.5",
            ),
            seed=int(_num(s.get("seed", 0), at / "split" / "seed", lo=0, what="an integer >= 0")),
            stratify=_bool(s.get("stratify", True), at / "split" / "stratify"),
        )
    return Data(_name(d["dataset"], at / "dataset", "dataset name"), target, features, split)


def _estimator(raw: Any, at: At) -> Estimator:
    e = _mapping(raw, at, {"class", "entry_point", "params", "preprocess"})
    if ("class" in e) == ("entry_point" in e):
        raise at.fail("give exactly one of 'class' (an estimator class path) or 'entry_point' (module:function)")
    cls = entry = None
    if "class" in e:
        cls = _str(e["class"], at / "class")
        if not _DOTTED.match(cls):
            raise (at / "class").fail(
                f"expected a dotted class path such as sklearn.linear_model.LogisticRegression, got {cls!r}"
            )
    else:
        entry = _str(e["entry_point"], at / "entry_point")
        if not _ENTRY.match(entry):
            raise (at / "entry_point").fail(f"expected module:function, got {entry!r}")
    params = e.get("params", {}) or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise (at / "params").fail(f"expected a mapping of parameter names to values, got {_kind(params)}")
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool | type(None) | list):
            raise (at / "params" / key).fail(f"expected a plain value, got {_kind(value)}")
    preprocess = e.get("preprocess", "auto")
    if preprocess not in ("auto", "none"):
        raise (at / "preprocess").fail(f"expected 'auto' or 'none', got {_kind(preprocess)}")
    return Estimator(cls, entry, dict(params), preprocess)


def _evaluation(raw: Any, at: At) -> Evaluation:
    e = _mapping(raw, at, {"metrics", "primary"})
    metrics = tuple(Evaluation.metrics)
    if "metrics" in e:
        items = _list(e["metrics"], at / "metrics")
        metrics = tuple(_metric(m, at / "metrics" / i) for i, m in enumerate(items))
        if not metrics:
            raise (at / "metrics").fail("expected at least one metric")
    primary = _metric(e.get("primary", metrics[0]), at / "primary")
    if primary not in metrics:
        metrics = (primary, *metrics)
    return Evaluation(metrics, primary)


def _metric(value: Any, at: At) -> str:
    if value not in METRICS:
        raise at.fail(f"unknown metric {_kind(value)}; known: {', '.join(sorted(METRICS))}")
    return str(value)


def _gate(raw: Any, at: At, evaluation: Evaluation) -> Gate:
    g = _mapping(raw, at, {"min_improvement", "tolerance", "checks", "approval", "shadow_rows"})
    tolerance: dict[str, float] = {}
    if "tolerance" in g:
        t = g["tolerance"]
        if not isinstance(t, Mapping):
            raise (at / "tolerance").fail(f"expected a mapping of metric to allowed regression, got {_kind(t)}")
        for metric, value in t.items():
            name = _metric(metric, at / "tolerance" / str(metric))
            if name not in evaluation.metrics:
                raise (at / "tolerance" / name).fail(
                    f"is not one of evaluation.metrics ({', '.join(evaluation.metrics)})"
                )
            tolerance[name] = _num(value, at / "tolerance" / name, lo=0, what="a number >= 0")
    checks = tuple(_entry(c, at / "checks" / i) for i, c in enumerate(_list(g.get("checks", []), at / "checks")))
    return Gate(
        min_improvement=_num(g.get("min_improvement", 0.0), at / "min_improvement", what="a number"),
        tolerance=tolerance,
        checks=checks,
        approval=_bool(g.get("approval", False), at / "approval"),
        shadow_rows=int(_num(g["shadow_rows"], at / "shadow_rows", lo=1, what="an integer >= 1"))
        if g.get("shadow_rows") is not None
        else None,
    )


def _entry(value: Any, at: At) -> str:
    text = _str(value, at)
    if not _ENTRY.match(text):
        raise at.fail(f"expected module:function, got {text!r}")
    return text


_MONITOR_KEYS = {
    "window_rows",
    "window_s",
    "reference",
    "alias",
    "schedule_s",
    "min_rows",
    "multivariate",
    "thresholds",
}
_RULE_KEYS = {"name", "metric", "op", "threshold", "feature", "severity", "cooldown_s", "window"}


def _monitoring(raw: Any, at: At) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    m = _mapping(raw, at, _MONITOR_KEYS | {"rules"})
    rules = []
    for i, rule in enumerate(_list(m.pop("rules", []), at / "rules")):
        r = _mapping(rule, at / "rules" / i, _RULE_KEYS, required={"name", "metric", "op", "threshold"})
        r["threshold"] = _num(r["threshold"], at / "rules" / i / "threshold")
        rules.append(r)
    for key in ("window_rows", "min_rows"):
        if key in m:
            m[key] = int(_num(m[key], at / key, lo=1, what="an integer >= 1"))
    for key in ("window_s", "schedule_s"):
        if key in m:
            m[key] = _num(m[key], at / key, lo=1e-9, what="a number > 0")
    return m, tuple(rules)


def _retraining(raw: Any, at: At) -> Retraining:
    r = _mapping(raw, at, {"triggers", "alert_rules", "schedule", "debounce_s", "cooldown_s", "data", "study"})
    study = None if r.get("study") is None else _str(r["study"], at / "study")
    triggers = tuple(_list(r.get("triggers", ["manual"]), at / "triggers"))
    for i, t in enumerate(triggers):
        if t not in TRIGGERS:
            raise (at / "triggers" / i).fail(f"unknown trigger {_kind(t)}; known: {', '.join(TRIGGERS)}")
    schedule = r.get("schedule")
    if schedule is not None:
        schedule = _cron(schedule, at / "schedule")
    if "schedule" in triggers and schedule is None:
        raise (at / "schedule").fail("the 'schedule' trigger needs a cron expression such as \"0 3 * * *\"")
    rules = tuple(
        _str(x, at / "alert_rules" / i)
        for i, x in enumerate(_list(r.get("alert_rules", list(Retraining.alert_rules)), at / "alert_rules"))
    )
    data = r.get("data", "latest")
    if data not in DATA_POLICIES:
        raise (at / "data").fail(f"expected one of {', '.join(DATA_POLICIES)}, got {_kind(data)}")
    return Retraining(
        triggers,
        rules,
        schedule,
        _num(r.get("debounce_s", 3600.0), at / "debounce_s", lo=0, what="a number >= 0"),
        data,
        _num(r.get("cooldown_s", 3600.0), at / "cooldown_s", lo=0, what="a number >= 0"),
        study,
    )


def _cron(value: Any, at: At) -> str:
    text = _str(value, at)
    parts = text.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
        raise at.fail(f"expected a cron expression of 5 fields (minute hour day month weekday), got {text!r}")
    return text
