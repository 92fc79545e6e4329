"""The `policy` flavour: a `keel.causal.PolicyTree` (which action for whom), stored as plain JSON.

The artifact is the tree's `to_dict()` as UTF-8 JSON: no code, so it loads untrusted, and
`PolicyTree.from_dict` checks every field of what it reads (it may come from anyone who can
write artifacts). Predictions are the recommended actions; each row's answer also carries the
action's `expected_gain` over the baseline, and the flavour's own explanation of a row is the
rule that fired with every action's expected outcome in that leaf.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError, InvalidModelError
from keel.registry.flavor_base import BaseFlavor, RecordsForm

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PolicyFlavor", "MAX_POLICY_BYTES"]

MAX_POLICY_BYTES = 4 * 1024 * 1024  # a depth-3 tree is a few kB; the limit only bounds hostile bytes


class PolicyFlavor(BaseFlavor):
    name = "policy"
    format = "policy tree JSON"
    checks_loaded = True  # registration predicts with the tree read back from its JSON, as serving will

    def accepts(self, model: Any) -> bool:
        if type(model).__name__ != "PolicyTree":  # cheap: keel.causal is imported only for a candidate
            return False
        from keel.causal import PolicyTree

        return isinstance(model, PolicyTree)

    def save(self, model: Any) -> bytes:
        if not self.accepts(model):
            raise InvalidInputError(f"The policy flavour saves keel.causal.PolicyTree, not {type(model).__name__}")
        return json.dumps(model.to_dict(), sort_keys=True, allow_nan=False).encode()

    def audit(self, data: bytes, *, trusted: bool) -> None:
        self.load(data, trusted=trusted)  # plain JSON holds no code; reading it is the whole check

    def load(self, data: bytes, *, trusted: bool) -> Any:
        from keel.causal import PolicyTree

        if len(data) > MAX_POLICY_BYTES:
            raise InvalidModelError(f"A policy tree artifact is at most {MAX_POLICY_BYTES} bytes, got {len(data)}.")
        try:
            # Finite numbers only: from_dict refuses NaN and infinities that Python's JSON reads.
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise InvalidModelError(f"This is not a policy tree artifact (JSON): {type(exc).__name__}") from None
        return PolicyTree.from_dict(parsed)

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "frame"

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        return frame

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        return model.predict(data)

    def row_fields(self, model: Any, data: Any) -> list[dict[str, Any]]:
        return [{"expected_gain": float(g)} for g in model.expected_gain(data).tolist()]

    def explain_rows(self, model: Any, data: Any) -> list[dict[str, Any]]:
        return list(model.explain(data))

    def describe(self, model: Any) -> dict[str, Any]:
        return {
            **super().describe(model),
            "features": list(model.features),
            "actions": list(model.actions),
            "baseline": model.baseline,
            "depth": model.depth,
            "rules": model.rules(),
        }
