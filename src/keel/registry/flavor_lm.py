"""The `lm` flavour: a language model trained by keel.genai (`TrainedLM`), stored as one safetensors file
(the float32 weights) whose metadata holds the config, the tokenizer and the training curves as JSON
(keel.genai.lm_io): no code, so it loads untrusted, and `lm_from_bytes` checks every tensor's name,
dtype and shape against the config before reading it.

As a model it takes a `prompt` column and answers each row with its greedy completion (temperature 0,
so the same prompt gives the same text); sampling parameters and streaming are the generate route's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from keel.errors import InvalidInputError, InvalidModelError
from keel.registry.flavor_base import BaseFlavor, RecordsForm

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LMFlavor", "PREDICT_TOKENS"]

PREDICT_TOKENS = 32  # tokens a /predict answer completes; /generate takes its own max_tokens


class LMFlavor(BaseFlavor):
    name = "lm"
    format = "safetensors + JSON (config, tokenizer, curves)"
    checks_loaded = True  # registration predicts with the model read back from its bytes, as serving will

    def accepts(self, model: Any) -> bool:
        if type(model).__name__ != "TrainedLM":  # cheap: keel.genai is imported only for a candidate
            return False
        from keel.genai.lm import TrainedLM

        return isinstance(model, TrainedLM)

    def save(self, model: Any) -> bytes:
        if not self.accepts(model):
            raise InvalidInputError(f"The lm flavour saves keel.genai TrainedLM, not {type(model).__name__}")
        from keel.genai.lm_io import lm_to_bytes

        return lm_to_bytes(model)

    def audit(self, data: bytes, *, trusted: bool) -> None:
        self.load(data, trusted=trusted)  # tensors and JSON hold no code; reading them is the whole check

    def load(self, data: bytes, *, trusted: bool) -> Any:
        from keel.genai.lm_io import lm_from_bytes

        try:
            return lm_from_bytes(data)
        except InvalidInputError as exc:
            raise InvalidModelError(f"This is not a valid language model artifact: {exc}") from None

    def records_as(self, model: Any, columns: tuple[str, ...]) -> RecordsForm | None:
        return "frame"

    def prepare(self, model: Any, frame: pd.DataFrame) -> Any:
        if "prompt" not in frame.columns:
            raise InvalidInputError("a language model takes a 'prompt' column")
        return [str(p) for p in frame["prompt"].tolist()]

    def predict(self, model: Any, data: Any, *, ref: str) -> Any:
        from keel.genai.generation import generate

        texts = [generate(model, prompt, max_tokens=PREDICT_TOKENS, temperature=0.0).text for prompt in data]
        return np.array(texts, dtype=object)

    def describe(self, model: Any) -> dict[str, Any]:
        return {
            **super().describe(model),
            "config": model.config.to_dict(),
            "parameters": int(model.n_params),
            "val_perplexity": model.val_perplexity,
            "steps": model.steps,
        }
