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
  cooldown_s: 3600                # after a promotion: the new champion's own traffic first
  data: latest                    # or reference+production: plus labelled production rows
explain:                          # optional: how reason codes name features
  display: {Income: {name: monthly income, unit: "$"}}
tuning:                           # optional: `keel tune NAME` searches these, then runs the gate
  params: {learning_rate: {low: 0.01, high: 0.3, log: true}, max_leaf_nodes: [15, 31, 63]}
  trials: 8
edge:                             # optional: edge builds that follow the champion (ws.edge)
  targets:
    - {target: c, quantize: int16, mcu: cortex-m4}
    - {target: c, quantize: int8, mcu: cortex-m0, min_agreement: 0.99}
  min_agreement: 1.0              # the share of identical predicted classes on the holdout (classifiers)
  max_abs_diff: null              # optional: the largest score difference allowed (regressors' check)
  on_failure: gate                # gate: a build that loses agreement or does not fit fails the promotion;
                                  #   alert: the champion is promoted, its builds follow as a job, and a
                                  #   failing one raises the edge-build-failed alert
  qemu: true                      # also run each C build on the emulated MCU (when the toolchain is here)
```

A decision policy is a model project too: with a `policy:` section (and no estimator) the model is a
PPO policy trained on a digital twin of `data.dataset`, whose demand column is `data.target`; each
cycle refits the twin on the newest data and the gate compares challenger and champion on it with
common random numbers (metric `cost`, per period, lower is better):

```yaml
model: a10-ordering
data: {dataset: a10-sales, target: value}
policy:
  twin: pharmacy                  # the twin's name (default: the model's)
  time_column: time
  period: month
  scale: 10
  lead_time: 1
  costs: {holding: 1, penalty: 9}
  steps: 50000
  seeds: 2
gate: {min_improvement: 0.0}      # in cost per period
retraining: {triggers: [new_data, manual]}
```

Every wrong key or value raises `ProjectError` naming its location (`keel.yaml: gate.tolerance.accuracy:
expected a number >= 0, got 'high'`). `Project.from_dict` is pure (a stored project parses even where
its modules are absent); `load_project` and `Retraining.train` also import every path the project
names (`check_imports`), so a misspelt class or check fails at once, not after a training.
This module holds the dataclasses; `_project_parse.py` reads a mapping into them.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from keel.errors import InvalidInputError

__all__ = [
    "Project",
    "ProjectError",
    "EdgeLoop",
    "EdgeTarget",
    "PolicyProject",
    "PolicyTrainer",
    "LMProject",
    "Tuning",
    "load_project",
    "check_imports",
    "resolve",
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "TRIGGERS",
]

HIGHER_IS_BETTER = frozenset({"roc_auc", "accuracy", "f1", "r2"})
# cost: a policy's, per period; perplexity: a language model's on the corpus's held-out split
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "mae", "rmse", "cost", "perplexity"})
METRICS = HIGHER_IS_BETTER | LOWER_IS_BETTER
POLICY_METRICS = ("cost",)  # what a policy project's gate weighs (the twin's simulated cost per period)
LM_METRICS = ("perplexity",)  # what a language model project's gate weighs (see keel.workspace.lm_loop)
TRIGGERS = ("alert", "new_data", "schedule", "manual")
DATA_POLICIES = ("latest", "reference+production")
EDGE_TARGETS = ("c", "onnx")
EDGE_QUANTIZE = ("float32", "int16", "int8")
EDGE_ON_FAILURE = ("gate", "alert")


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
    # After the champion moves (promotion, approval, rollback, a manual alias move) no automatic
    # cycle starts for this long, and only alerts raised after the move count: the new champion
    # is judged on its own traffic, not retrained on what its predecessor's checks found.
    cooldown_s: float = 3600.0
    # Optional: a causal study (`retraining: {study: NAME}`) rerun on the newest data after each retraining.
    study: str | None = None


@dataclass(frozen=True)
class Tuning:
    """A hyper-parameter search: each param a list of choices or a range {low, high, log, int}."""

    params: dict[str, Any] = field(default_factory=dict)
    trials: int = 8
    seed: int = 0


@dataclass(frozen=True)
class EdgeTarget:
    """One edge build that follows the champion: what `ws.edge.build` is called with, and the
    agreement it must keep (None: the project's `min_agreement`)."""

    target: str = "c"
    quantize: str = "float32"
    mcu: str = "cortex-m4"
    min_agreement: float | None = None
    max_abs_diff: float | None = None

    @property
    def label(self) -> str:
        return f"{self.target}/{self.quantize}/{self.mcu}"


@dataclass(frozen=True)
class EdgeLoop:
    """The project's edge targets: rebuilt and verified for each new champion. With
    `on_failure: gate` they are built for the challenger before it is promoted, and a build that
    loses agreement or no longer fits the MCU fails the gate; with `alert` the champion is promoted
    and its builds follow as a job, a failing one raising the `edge-build-failed` alert."""

    targets: tuple[EdgeTarget, ...]
    min_agreement: float = 1.0
    max_abs_diff: float | None = None
    on_failure: str = "gate"
    qemu: bool = True


@dataclass(frozen=True)
class PolicyProject:
    """`policy:`: the model is a decision policy trained on a digital twin of `data.dataset` (its demand
    column `data.target`): the twin's system (ws.rl.twin's arguments), the training (ws.rl.train's) and
    the gate's evaluation on the refitted twin (`periods` x `copies`, common random numbers)."""

    twin: str
    lead_time: int = 2
    costs: dict[str, float] = field(default_factory=dict)
    lost_sales: bool = False
    capacity: int | None = None
    shelf_life: int | None = None
    time_column: str | None = None
    period: str | None = None
    season: int | None = None
    scale: float | None = None
    steps: int = 200_000
    seeds: int = 1
    action: str = "order_up_to"
    n_envs: int = 8
    periods: int = 500
    copies: int = 256


@dataclass(frozen=True)
class LMProject:
    """`lm:`: the model is a language model trained by `ws.genai.train` on the newest version of the
    corpus `data.dataset` (its arguments below); the gate compares challenger and champion by perplexity
    on that version's held-out split (per byte when their tokenizers differ)."""

    config: str | dict[str, Any] = "small"  # a preset name or GPTConfig fields
    steps: int | None = None
    tokens: int | None = None
    text_column: str | None = None
    valid_share: float = 0.1
    seed: int = 0
    batch: int = 16
    lr: float | None = None
    vocab_size: int | None = None
    device: str = "cpu"
    threads: int = 1


class PolicyTrainer(Protocol):
    """What a policy or language model project's cycle needs of the workspace (keel.workspace.rl_loop
    and keel.workspace.lm_loop wire it): train and register the challenger (a policy: on the refitted
    twin), and score it and the champion on the same data (the same demand; the same held-out texts)."""

    def train(
        self, project: Project, dataset: str | None, champion: Any, evidence: dict[str, Any]
    ) -> tuple[Any, dict[str, float], dict[str, float] | None, str | None]: ...


@dataclass(frozen=True)
class Project:
    """A model project; `Project.from_dict(...)` or `load_project("keel.yaml")` validate it. A language
    model project (an `lm:` section, see keel.retraining._project_lm) has no estimator."""

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
    edge: EdgeLoop | None = None
    policy: PolicyProject | None = None
    source: str = "<dict>"
    lm: LMProject | None = None

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<dict>") -> Project:
        from keel.retraining._project_parse import parse  # it builds the dataclasses of this module

        return parse(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form (what the workspace stores; `from_dict` reads it back unchanged)."""
        out = asdict(self)
        est = out.pop("estimator")
        if self.policy is not None or self.lm is not None:  # neither has an estimator
            out.pop("source")
            if self.lm is not None:  # a corpus has no target, features or split of the project's own
                out["data"] = {"dataset": self.data.dataset}
                for key in ("explain", "tuning", "edge", "policy"):
                    out.pop(key)
            return _plain(_monitoring_out(self, out))
        out["estimator"] = {
            k: v
            for k, v in {
                "class": est["cls"],
                "entry_point": est["entry_point"],
                "params": est["params"],
                "preprocess": est["preprocess"],
            }.items()
            if v is not None
        }
        out.pop("source")
        return _plain(_monitoring_out(self, out))

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
    return check_imports(Project.from_dict(raw, source=p.name))


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
    from keel.retraining._project_parse import At  # it imports this module

    at = At(project.source)
    paths = [
        (at / "estimator" / "class", project.estimator.cls),
        (at / "estimator" / "entry_point", project.estimator.entry_point),
    ]
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


def _monitoring_out(project: Project, out: dict[str, Any]) -> dict[str, Any]:
    monitoring = dict(out.pop("monitoring"))
    if project.alert_rules:
        monitoring["rules"] = [dict(r) for r in project.alert_rules]
    out.pop("alert_rules")
    out["monitoring"] = monitoring
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
