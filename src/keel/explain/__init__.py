"""Explanations (compute: values in, values out; never storage): per-row SHAP attributions for
any fitted model (`attributions.py`; Keel's own exact TreeSHAP for LightGBM and scikit-learn forests in `treeshap.py`), reason codes (`reasons.py`), LIME with a stability score
(`local.py`), word and pixel attributions (`modalities.py`). The Workspace loads the
model version and its training data and calls these: `ws.explain(...)`.

May import: keel.errors, numpy, pandas, scikit-learn, and `shap` and `numba` (lazily: the [explain] extra;
numba comes with shap).
"""

from keel.explain.attributions import Explanation, explain_model
from keel.explain.local import LimeExplanation, lime_tabular, lime_text
from keel.explain.modalities import TextAttribution, pixel_maps, word_attributions
from keel.explain.reasons import Reason, reason_codes, typical_values

__all__ = [
    "Explanation",
    "explain_model",
    "Reason",
    "reason_codes",
    "typical_values",
    "LimeExplanation",
    "lime_tabular",
    "lime_text",
    "TextAttribution",
    "word_attributions",
    "pixel_maps",
]
