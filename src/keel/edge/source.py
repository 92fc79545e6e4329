"""The value every C generator of keel.edge returns and every checker takes: `CModel`, the C99 source of
one model (a header and a source file), with what a caller needs to feed it and read its answer.

The generated library has one entry point, `int NAME_predict(const float *features, float *scores)`:
`features` in `feature_names` order (already scaled by nothing: any scaling of the model is folded in),
`scores` of length `n_outputs` (class probabilities or decision scores for a classifier, the value for
a regressor); it returns the predicted class index (0 for a regressor). A quantized build may add
`int NAME_predict_int(const int16_t *features, float *scores)` (or int8), whose input is
`round(feature * input_scale[i])`, saturated; `int_input` then names its C type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CModel", "Quantize", "TaskKind"]

Quantize = Literal["float32", "int16", "int8"]
TaskKind = Literal["classifier", "regressor"]


@dataclass(frozen=True)
class CModel:
    """C99 source of one model: `files` maps file names ('NAME.h', 'NAME.c') to their text."""

    name: str  # a C identifier: the prefix of every symbol
    files: dict[str, str]
    kind: TaskKind
    feature_names: tuple[str, ...]
    n_outputs: int  # length of the scores array
    classes: tuple[Any, ...] | None  # class labels in score order (None for a regressor)
    quantize: Quantize
    int_input: str | None = None  # 'int16_t' / 'int8_t' when NAME_predict_int exists
    input_scale: tuple[float, ...] | None = None  # per feature, for NAME_predict_int
    notes: tuple[str, ...] = ()  # what the generator chose or bounded, in words (the build report shows them)
    details: dict[str, Any] = field(default_factory=dict)  # generator-specific facts: nodes, leaves, bound, ...

    @property
    def entry(self) -> str:
        return f"{self.name}_predict"

    @property
    def header(self) -> str:
        return f"{self.name}.h"
