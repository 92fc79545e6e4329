"""Reading a language model project (a model project with an `lm:` section) into project.Project, with
every error located like the rest of the file (_project_parse.py).

```yaml
model: coder
data: {dataset: code}             # the corpus: each cycle trains on its newest version (or the one given)
lm:
  config: small                   # a preset (tiny, small, base) or GPTConfig fields {n_layer: 2, ...}
  steps: 300                      # or tokens: 300000
  text_column: text               # a table's text column (its only text column when left out)
  valid_share: 0.1                # the held-out share of the documents (by content hash)
  seed: 0
gate: {min_improvement: 0.0}      # in perplexity on the new version's held-out split; lower is better
retraining: {triggers: [new_data, alert, manual]}   # alert_rules default: prompt-drift, prompt-perplexity
```

What does not apply to a language model is refused by name: an estimator, a tuning or edge section,
shadow mode (live prompts carry no labels to judge on), gate checks (they are called with a table's
holdout) and `retraining.data: reference+production`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from keel.errors import InvalidInputError
from keel.retraining._project_parse import At, _evaluation, _gate, _mapping, _monitoring, _name, _num, _retraining, _str
from keel.retraining.project import LM_METRICS, Data, Estimator, Evaluation, LMProject, Project

__all__ = ["LM_ALERT_RULES", "lm_project"]

LM_ALERT_RULES = ("prompt-drift", "prompt-perplexity")  # the default rules of an lm (keel.monitoring.alert_rules)
_KEYS = {
    "config",
    "steps",
    "tokens",
    "text_column",
    "valid_share",
    "seed",
    "batch",
    "lr",
    "vocab_size",
    "device",
    "threads",
}
_NOT_FOR_LM = {
    "estimator": "a language model project trains keel's GPT on its corpus: leave the estimator out",
    "policy": "a project is a language model (lm:) or a policy (policy:), not both",
    "tuning": "tuning searches an estimator's parameters; a language model project has none",
    "edge": "edge builds take tabular models; a language model project has none",
}


def lm_project(doc: dict[str, Any], top: At, model: str, source: str) -> Project:
    """The project of `doc`, a mapping with an `lm:` section (the keys were checked by `parse`)."""
    for key, why in _NOT_FOR_LM.items():
        if key in doc:
            raise (top / key).fail(why)
    d = _mapping(doc["data"], top / "data", {"dataset"}, required={"dataset"})
    dataset = _name(d["dataset"], top / "data" / "dataset", "corpus name")
    evaluation = Evaluation(LM_METRICS, "perplexity")
    if "evaluation" in doc:
        named = _evaluation(doc["evaluation"], top / "evaluation")
        if set(named.metrics) | {named.primary} != {"perplexity"}:
            raise (top / "evaluation").fail("a language model project is judged on 'perplexity' only")
    gate = _gate(doc.get("gate", {}), top / "gate", evaluation)
    if gate.shadow_rows:
        raise (top / "gate" / "shadow_rows").fail("live prompts carry no labels: a language model has no shadow mode")
    if gate.checks:
        raise (top / "gate" / "checks").fail("gate checks are called with a table's holdout; an lm project has none")
    monitoring, rules = _monitoring(doc.get("monitoring", {}), top / "monitoring")
    raw_retraining = doc.get("retraining", {})
    retraining = _retraining(raw_retraining, top / "retraining")
    if retraining.data != "latest":
        raise (top / "retraining" / "data").fail("a language model trains on its corpus version: use 'latest'")
    if not (isinstance(raw_retraining, dict) and "alert_rules" in raw_retraining):
        retraining = replace(retraining, alert_rules=LM_ALERT_RULES)
    return Project(
        model,
        Data(dataset, target=""),
        Estimator(),
        evaluation,
        gate,
        monitoring,
        rules,
        retraining,
        None,
        {},
        None,
        None,
        source,
        lm=_lm(doc["lm"], top / "lm"),
    )


def _lm(raw: Any, at: At) -> LMProject:
    m = _mapping({} if raw is None else raw, at, _KEYS)

    def whole(key: str, low: int) -> int | None:
        value = m.get(key)
        return None if value is None else int(_num(value, at / key, lo=low, what=f"an integer >= {low}"))

    config = m.get("config", "small")
    if isinstance(config, dict):
        config = _gpt_fields(config, at / "config")
    else:
        from keel.genai.lm import PRESETS  # plain values, no torch

        if config not in PRESETS:
            raise (at / "config").fail(f"expected a preset ({', '.join(PRESETS)}) or GPTConfig fields, got {config!r}")
    if m.get("steps") is not None and m.get("tokens") is not None:
        raise (at / "tokens").fail("give steps or tokens, not both")
    device = m.get("device", "cpu")
    if device not in ("cpu", "cuda"):
        raise (at / "device").fail(f"expected cpu or cuda, got {device!r}")
    return LMProject(
        config=config,
        steps=whole("steps", 1),
        tokens=whole("tokens", 1),
        text_column=None if m.get("text_column") is None else _str(m["text_column"], at / "text_column"),
        valid_share=_num(m.get("valid_share", 0.1), at / "valid_share", lo=1e-6, hi=0.5, what="a share in (0, 0.5]"),
        seed=whole("seed", 0) or 0,
        batch=whole("batch", 1) or 16,
        lr=None if m.get("lr") is None else _num(m["lr"], at / "lr", lo=1e-12, what="a number > 0"),
        vocab_size=whole("vocab_size", 260),
        device=device,
        threads=whole("threads", 1) or 1,
    )


def _gpt_fields(raw: dict[str, Any], at: At) -> dict[str, Any]:
    from dataclasses import fields

    from keel.genai.lm import GPTConfig

    config = _mapping(raw, at, {f.name for f in fields(GPTConfig)})
    try:
        GPTConfig(**config)
    except InvalidInputError as exc:
        raise at.fail(str(exc)) from None
    return config
