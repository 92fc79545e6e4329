"""The model project: one declarative file (`keel.yaml`) or `keel.Project(...)` that says how a
model is trained, judged, promoted, watched and retrained.

```yaml
model: credit-risk
data:
  dataset: credit                 # name (retraining takes the latest version) or name@version
  target: Status
  features: [Seniority, Income]   # optional: every other column
  split: {test_fraction: 0.25, seed: 0, stratify: true}
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier   # or entry_point: my_pkg.recipes:train
  params: {learning_rate: 0.05, max_iter: 200}
  preprocess: auto                # auto: impute, one-hot categoricals; none: the frame as it is
evaluation:
  metrics: [roc_auc, accuracy, log_loss]
  primary: roc_auc
gate:
  min_improvement: 0.0            # the challenger's primary metric must beat the champion's by this
  tolerance: {accuracy: 0.01}     # other metrics may be worse by at most this
  checks: [my_pkg.checks:fair]    # optional: callables that may veto a promotion
  approval: false                 # true: a passing challenger waits for `keel models approve`
  shadow_rows: 500                # optional: a challenger first scores live requests silently until 500
                                  #   of them have true labels, and both models are judged on those (the
                                  #   first version, with no champion to shadow, is promoted directly)
monitoring: {window_rows: 1000, schedule_s: 300}
retraining:
  triggers: [alert, new_data, schedule, manual]
  alert_rules: [feature-drift, auc-drop]
  schedule: "0 3 * * *"
  debounce_s: 3600
  data: latest                    # or reference+production: plus labelled production rows
explain:                          # optional: how reason codes name features
  display: {Income: {name: monthly income, unit: "$"}}
tuning:                           # optional: `keel tune NAME` searches these, then runs the gate
  params: {learning_rate: {low: 0.01, high: 0.3, log: true}, max_leaf_nodes: [15, 31, 63]}
  trials: 8
```

Every wrong key or value raises `ProjectError` naming its location (`keel.yaml: gate.tolerance.accuracy:
expected a number >= 0, got 'high'`). `Project.from_dict` is pure (a stored project parses even where
its modules are absent); `load_project` and `Retraining.train` also import every path the project
names (`check_imports`), so a misspelt class or check fails at once, not after a training.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import InvalidInputError
from keel.refs import check_name

__all__ = ["Project", "ProjectError", "Tuning", "load_project", "check_imports", "resolve", "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "TRIGGERS"]

HIGHER_IS_BETTER = frozenset({"roc_auc", "accuracy", "f1", "r2"})
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "mae", "rmse"})
METRICS = HIGHER_IS_BETTER | LOWER_IS_BETTER
TRIGGERS = ("alert", "new_data", "schedule", "manual")
DATA_POLICIES = ("latest", "reference+production")
_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_ENTRY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


class ProjectError(InvalidInputError):
    """A model project with a wrong key or value; the message starts with its location."""


@dataclass(frozen=True)
class Split:
    test_fraction: float = 0.25
    seed: int = 0
    stratify: bool = True


@dataclass(frozen=True)
class Data:
    dataset: str
    target: str
    features: tuple[str, ...] | None = None
    split: Split = field(default_factory=Split)


@dataclass(frozen=True)
class Estimator:
    cls: str | None = None  # 'sklearn.ensemble.HistGradientBoostingClassifier'
    entry_point: str | None = None  # 'my_pkg.recipes:train', called as train(X, y, params) -> fitted model
    params: dict[str, Any] = field(default_factory=dict)
    preprocess: str = "auto"


@dataclass(frozen=True)
class Evaluation:
    metrics: tuple[str, ...] = ("roc_auc", "accuracy", "log_loss")
    primary: str = "roc_auc"


@dataclass(frozen=True)
class Gate:
    min_improvement: float = 0.0
    tolerance: dict[str, float] = field(default_factory=dict)
    checks: tuple[str, ...] = ()
    approval: bool = False
    shadow_rows: int | None = None  # then: the challenger scores live traffic silently first


@dataclass(frozen=True)
class Retraining:
    triggers: tuple[str, ...] = ("manual",)
    alert_rules: tuple[str, ...] = ("feature-drift", "multivariate-drift", "auc-drop", "accuracy-drop", "rmse-increase")
    schedule: str | None = None
    debounce_s: float = 3600.0
    data: str = "latest"


@dataclass(frozen=True)
class Tuning:
    """A hyper-parameter search: each param a list of choices or a range {low, high, log, int}."""

    params: dict[str, Any] = field(default_factory=dict)
    trials: int = 8
    seed: int = 0


@dataclass(frozen=True)
class Project:
    """A model project; `Project.from_dict(...)` or `load_project("keel.yaml")` validate it."""

    model: str
    data: Data
    estimator: Estimator
    evaluation: Evaluation = field(default_factory=Evaluation)
    gate: Gate = field(default_factory=Gate)
    monitoring: dict[str, Any] = field(default_factory=dict)
    alert_rules: tuple[dict[str, Any], ...] = ()
    retraining: Retraining = field(default_factory=Retraining)
    tuning: Tuning | None = None
    explain: dict[str, Any] = field(default_factory=dict)  # {"display": {feature: {"name": ..., "unit": ...}}}
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<dict>") -> Project:
        return _parse(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form (what the workspace stores; `from_dict` reads it back unchanged)."""
        out = asdict(self)
        est = out.pop("estimator")
        out["estimator"] = {k: v for k, v in {"class": est["cls"], "entry_point": est["entry_point"],
                                               "params": est["params"], "preprocess": est["preprocess"]}.items() if v is not None}  # fmt: skip
        monitoring = dict(out.pop("monitoring"))
        if self.alert_rules:
            monitoring["rules"] = [dict(r) for r in self.alert_rules]
        out.pop("alert_rules")
        out["monitoring"] = monitoring
        out.pop("source")
        return _plain(out)

    @property
    def lower_is_better(self) -> bool:
        return self.evaluation.primary in LOWER_IS_BETTER


def load_project(path: str | Path) -> Project:
    """Read and validate a `keel.yaml`."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{p}: no such project file") from None
    except OSError as exc:
        raise ProjectError(f"{p}: cannot read it ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ProjectError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return check_imports(_parse(raw, p.name))


def resolve(path: str, what: str) -> Any:
    """Import 'pkg.module.Name' or 'pkg.module:function'."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectError(f"{what} {path!r}: cannot import {module_name!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ProjectError(f"{what} {path!r}: {module_name!r} has no {attr!r}") from None


def check_imports(project: Project) -> Project:
    """`project`, once every class, recipe and check it names imports; else a ProjectError naming
    the location and the path (`keel.yaml: gate.checks[0]: 'my_pkg.checks:fair': cannot import ...`)."""
    at = _At(project.source)
    paths = [(at / "estimator" / "class", project.estimator.cls), (at / "estimator" / "entry_point", project.estimator.entry_point)]
    paths += [(at / "gate" / "checks" / i, path) for i, path in enumerate(project.gate.checks)]
    for where, path in paths:
        if path is None:
            continue
        try:
            found = resolve(path, "")
        except ProjectError as exc:
            raise where.fail(f"{str(exc).strip()}; install the package that provides it, or fix the path") from None
        if not callable(found):
            raise where.fail(f"{path!r} is a {type(found).__name__}, not a class or function")
    return project


# -- parsing ------------------------------------------------------------------------------------
class _At:
    """Where we are in the file, for messages: 'keel.yaml: gate.tolerance.accuracy'."""

    def __init__(self, source: str, path: str = "") -> None:
        self.source, self.path = source, path

    def __truediv__(self, key: str | int) -> _At:
        if isinstance(key, int):
            return _At(self.source, f"{self.path}[{key}]")
        return _At(self.source, f"{self.path}.{key}" if self.path else key)

    def fail(self, message: str) -> ProjectError:
        return ProjectError(f"{self.source}: {self.path or 'top level'}: {message}")


def _mapping(value: Any, at: _At, known: set[str], *, required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
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


def _str(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not value.strip():
        raise at.fail(f"expected a non-empty string, got {_kind(value)}")
    return value.strip()


def _num(value: Any, at: _At, *, lo: float | None = None, hi: float | None = None, what: str = "a number") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise at.fail(f"expected {what}, got {_kind(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise at.fail(f"expected {what}, got {value!r}")
    return float(value)


def _bool(value: Any, at: _At) -> bool:
    if not isinstance(value, bool):
        raise at.fail(f"expected true or false, got {_kind(value)}")
    return value


def _list(value: Any, at: _At) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise at.fail(f"expected a list, got {_kind(value)}")
    return value


def _name(value: Any, at: _At, what: str) -> str:
    text = _str(value, at)
    try:
        check_name(text.split("@", 1)[0], what=what)
    except InvalidInputError as exc:
        raise at.fail(str(exc)) from None
    return text


def _parse(raw: Any, source: str) -> Project:
    top = _At(source)
    doc = _mapping(raw, top, {"model", "data", "estimator", "evaluation", "gate", "monitoring", "retraining", "tuning", "explain"},
                   required={"model", "data", "estimator"})  # fmt: skip
    model = _name(doc["model"], top / "model", "model name")
    if "@" in model:
        raise (top / "model").fail("a model name, without '@'")
    data = _data(doc["data"], top / "data")
    estimator = _estimator(doc["estimator"], top / "estimator")
    evaluation = _evaluation(doc.get("evaluation", {}), top / "evaluation")
    gate = _gate(doc.get("gate", {}), top / "gate", evaluation)
    monitoring, rules = _monitoring(doc.get("monitoring", {}), top / "monitoring")
    retraining = _retraining(doc.get("retraining", {}), top / "retraining")
    tuning = _tuning(doc["tuning"], top / "tuning") if doc.get("tuning") is not None else None
    explain = _explain(doc.get("explain", {}), top / "explain")
    return Project(model, data, estimator, evaluation, gate, monitoring, rules, retraining, tuning, explain, source)


def _explain(raw: Any, at: _At) -> dict[str, Any]:
    e = _mapping(raw, at, {"display"})
    display: dict[str, dict[str, str]] = {}
    for feature, spec in (e.get("display") or {}).items():
        d = _mapping(spec, at / "display" / str(feature), {"name", "unit"})
        display[str(feature)] = {k: _str(v, at / "display" / str(feature) / k) for k, v in d.items()}
    return {"display": display} if display else {}


def _tuning(raw: Any, at: _At) -> Tuning:
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


def _data(raw: Any, at: _At) -> Data:
    d = _mapping(raw, at, {"dataset", "target", "features", "split"}, required={"dataset", "target"})
    features = None
    if "features" in d:
        items = _list(d["features"], at / "features")
        features = tuple(_str(f, at / "features" / i) for i, f in enumerate(items))
        if not features:
            raise (at / "features").fail("expected at least one feature (or leave the key out: every column but the target)")
        if len(set(features)) != len(features):
            raise (at / "features").fail("lists a feature twice")
    target = _str(d["target"], at / "target")
    if features and target in features:
        raise (at / "features").fail(f"includes the target {target!r}")
    split = Split()
    if "split" in d:
        s = _mapping(d["split"], at / "split", {"test_fraction", "seed", "stratify"})
        split = Split(
            test_fraction=_num(s.get("test_fraction", 0.25), at / "split" / "test_fraction", lo=0.05, hi=0.5,
                               what="a fraction between 0.05 and 0.5"),
            seed=int(_num(s.get("seed", 0), at / "split" / "seed", lo=0, what="an integer >= 0")),
            stratify=_bool(s.get("stratify", True), at / "split" / "stratify"),
        )  # fmt: skip
    return Data(_name(d["dataset"], at / "dataset", "dataset name"), target, features, split)


def _estimator(raw: Any, at: _At) -> Estimator:
    e = _mapping(raw, at, {"class", "entry_point", "params", "preprocess"})
    if ("class" in e) == ("entry_point" in e):
        raise at.fail("give exactly one of 'class' (an estimator class path) or 'entry_point' (module:function)")
    cls = entry = None
    if "class" in e:
        cls = _str(e["class"], at / "class")
        if not _DOTTED.match(cls):
            raise (at / "class").fail(f"expected a dotted class path such as sklearn.linear_model.LogisticRegression, got {cls!r}")
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


def _evaluation(raw: Any, at: _At) -> Evaluation:
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


def _metric(value: Any, at: _At) -> str:
    if value not in METRICS:
        raise at.fail(f"unknown metric {_kind(value)}; known: {', '.join(sorted(METRICS))}")
    return str(value)


def _gate(raw: Any, at: _At, evaluation: Evaluation) -> Gate:
    g = _mapping(raw, at, {"min_improvement", "tolerance", "checks", "approval", "shadow_rows"})
    tolerance: dict[str, float] = {}
    if "tolerance" in g:
        t = g["tolerance"]
        if not isinstance(t, Mapping):
            raise (at / "tolerance").fail(f"expected a mapping of metric to allowed regression, got {_kind(t)}")
        for metric, value in t.items():
            name = _metric(metric, at / "tolerance" / str(metric))
            if name not in evaluation.metrics:
                raise (at / "tolerance" / name).fail(f"is not one of evaluation.metrics ({', '.join(evaluation.metrics)})")
            tolerance[name] = _num(value, at / "tolerance" / name, lo=0, what="a number >= 0")
    checks = tuple(_entry(c, at / "checks" / i) for i, c in enumerate(_list(g.get("checks", []), at / "checks")))
    return Gate(
        min_improvement=_num(g.get("min_improvement", 0.0), at / "min_improvement", what="a number"),
        tolerance=tolerance, checks=checks, approval=_bool(g.get("approval", False), at / "approval"),
        shadow_rows=int(_num(g["shadow_rows"], at / "shadow_rows", lo=1, what="an integer >= 1")) if g.get("shadow_rows") is not None else None,
    )  # fmt: skip


def _entry(value: Any, at: _At) -> str:
    text = _str(value, at)
    if not _ENTRY.match(text):
        raise at.fail(f"expected module:function, got {text!r}")
    return text


_MONITOR_KEYS = {"window_rows", "window_s", "reference", "alias", "schedule_s", "min_rows", "multivariate", "thresholds"}
_RULE_KEYS = {"name", "metric", "op", "threshold", "feature", "severity", "cooldown_s", "window"}


def _monitoring(raw: Any, at: _At) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
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


def _retraining(raw: Any, at: _At) -> Retraining:
    r = _mapping(raw, at, {"triggers", "alert_rules", "schedule", "debounce_s", "data"})
    triggers = tuple(_list(r.get("triggers", ["manual"]), at / "triggers"))
    for i, t in enumerate(triggers):
        if t not in TRIGGERS:
            raise (at / "triggers" / i).fail(f"unknown trigger {_kind(t)}; known: {', '.join(TRIGGERS)}")
    schedule = r.get("schedule")
    if schedule is not None:
        schedule = _cron(schedule, at / "schedule")
    if "schedule" in triggers and schedule is None:
        raise (at / "schedule").fail("the 'schedule' trigger needs a cron expression such as \"0 3 * * *\"")
    rules = tuple(_str(x, at / "alert_rules" / i) for i, x in enumerate(_list(r.get("alert_rules", list(Retraining.alert_rules)), at / "alert_rules")))
    data = r.get("data", "latest")
    if data not in DATA_POLICIES:
        raise (at / "data").fail(f"expected one of {', '.join(DATA_POLICIES)}, got {_kind(data)}")
    return Retraining(triggers, rules, schedule, _num(r.get("debounce_s", 3600.0), at / "debounce_s", lo=0, what="a number >= 0"), data)


def _cron(value: Any, at: _At) -> str:
    text = _str(value, at)
    parts = text.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
        raise at.fail(f"expected a cron expression of 5 fields (minute hour day month weekday), got {text!r}")
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
