"""The `policy` flavour: a decision policy, in one of two forms, neither of them code.

- a `keel.causal.PolicyTree` (which action for whom), stored as its `to_dict()` in UTF-8 JSON;
  `PolicyTree.from_dict` checks every field. Predictions are the recommended actions; each row's
  answer also carries the action's `expected_gain`, and the flavour's explanation of a row is the
  rule that fired with every action's expected outcome in that leaf.
- a `keel.rl.agent.TrainedPolicy` (an order per observation of a digital twin), stored as a
  safetensors file (the weights and the observation normalisation) with its metadata (action
  mapping, observation names, learning curve) as JSON in the header; `policy_from_bytes` checks
  every shape and value. Predictions are the orders; each row's answer also carries the
  order-up-to level the network aimed at, and its explanation says how the order followed from it.
Both load untrusted: the bytes may come from anyone who can write artifacts.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import InvalidInputError, InvalidModelError
from keel.registry.flavor_base import BaseFlavor, RecordsForm

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PolicyFlavor", "MAX_POLICY_BYTES"]

MAX_POLICY_BYTES = 16 * 1024 * 1024  # a tree is a few kB, a 64x64 network ~20 kB: the limit bounds hostile bytes


def _is_network(model: Any) -> bool:
    if type(model).__name__ != "TrainedPolicy":  # cheap: keel.rl is imported only for a candidate
        return False
    from keel.rl.agent import TrainedPolicy

    return isinstance(model, TrainedPolicy)


def _is_safetensors(data: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then that much JSON. A policy
    tree's JSON starts with '{"', whose bytes read as a length far beyond the file."""
    if len(data) < 9:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 8 + n <= len(data) and data[8:9] == b"{"


class PolicyFlavor(BaseFlavor):
    name = "policy"
    format = "policy tree JSON"
    checks_loaded = True  # registration predicts with the tree read back from its JSON, as serving will

    def accepts(self, model: Any) -> bool:
        if _is_network(model):
            return True
        if type(model).__name__ != "PolicyTree":  # cheap: keel.causal is imported only for a candidate
            return False
        from keel.causal import PolicyTree

        return isinstance(model, PolicyTree)

    def save(self, model: Any) -> bytes:
        if _is_network(model):
            from keel.rl.agent import policy_to_bytes

            return policy_to_bytes(model)
        if not self.accepts(model):
            raise InvalidInputError(
                f"The policy flavour saves keel.causal.PolicyTree or keel.rl TrainedPolicy, not {type(model).__name__}"
            )
        return json.dumps(model.to_dict(), sort_keys=True, allow_nan=False).encode()

    def audit(self, data: bytes, *, trusted: bool) -> None:
        self.load(data, trusted=trusted)  # plain JSON holds no code; reading it is the whole check

    def load(self, data: bytes, *, trusted: bool) -> Any:
        from keel.causal import PolicyTree

        if len(data) > MAX_POLICY_BYTES:
            raise InvalidModelError(f"A policy artifact is at most {MAX_POLICY_BYTES} bytes, got {len(data)}.")
        if _is_safetensors(data):
            from keel.rl.agent import policy_from_bytes

            try:
                return policy_from_bytes(data)
            except InvalidInputError as exc:
                raise InvalidModelError(f"This is not a valid trained policy: {exc}") from None
        try:
            # Finite numbers only: from_dict refuses NaN and infinities that Python's JSON reads.
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise InvalidModelError(f"This is not a policy tree artifact (JSON): {type(exc).__name__}") from None
        return PolicyTree.from_dict(parsed)

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "frame"

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        if _is_network(model):  # the observation in the twin's layout, whatever the column order sent
            return frame[list(model.observation_names)].to_numpy(dtype=np.float64)
        return frame

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        if _is_network(model):
            return np.atleast_1d(model.act(data))
        return model.predict(data)

    def row_fields(self, model: Any, data: Any) -> list[dict[str, Any]]:
        if _is_network(model):
            return [{"order_up_to": float(y)} for y in _aims(model, data)]
        return [{"expected_gain": float(g)} for g in model.expected_gain(data).tolist()]

    def explain_rows(self, model: Any, data: Any) -> list[dict[str, Any]]:
        if _is_network(model):
            orders = np.atleast_1d(model.act(data))
            positions = model.action.positions(np.asarray(data, dtype=np.float64))[:, 0]
            return [
                {"rule": f"order up to {y:.0f} from a position of {p:.0f}: order {q}", "order_up_to": float(y)}
                for y, p, q in zip(_aims(model, data), positions.tolist(), orders.tolist(), strict=True)
            ]
        return list(model.explain(data))

    def describe(self, model: Any) -> dict[str, Any]:
        if _is_network(model):
            return {
                **super().describe(model),
                "form": "trained network (keel.rl)",
                "observations": list(model.observation_names),
                "action": model.action.kind,
                "layers": [int(w.shape[1]) for w in model.weights[::2]],
                "activation": model.activation,
                "steps": model.steps,
                "seed": model.seed,
                "baseline": model.baseline,
            }
        return {
            **super().describe(model),
            "features": list(model.features),
            "actions": list(model.actions),
            "baseline": model.baseline,
            "depth": model.depth,
            "rules": model.rules(),
        }


def _aims(model: Any, data: Any) -> list[float]:
    """The level each observation's order aims at (for `quantity` actions: the quantity itself)."""
    levels = model.action.levels(model.forward(np.asarray(data, dtype=np.float64)))
    return [float(v) for v in np.asarray(levels)[:, 0].tolist()]
