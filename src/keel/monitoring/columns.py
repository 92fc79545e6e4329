"""The prediction log's own column names: one home for them, so that a reader, a writer and a
retraining job cannot disagree on a spelling. A request's input features keep their own names;
the log's columns start with two underscores so that they never collide with one (see
`predlog.py`'s docstring for what each holds).
"""

from __future__ import annotations

__all__ = [
    "AT",
    "BY",
    "ERROR",
    "ID",
    "LABEL",
    "LATENCY_MS",
    "META_COLUMNS",
    "PREDICTION",
    "PROBA_PREFIX",
    "VERSION",
    "proba_column",
]

ID = "__id"  # the prediction id (keel.monitoring.predbuffer.new_prediction_ids)
AT = "__at"  # when the request was answered (UTC)
VERSION = "__version"  # the model version that answered
LATENCY_MS = "__latency_ms"  # model time for the whole request
ERROR = "__error"  # why a request was refused; null for a served one
PREDICTION = "__prediction"  # the model's answer
PROBA_PREFIX = "__proba_"  # followed by a class: that class's probability
LABEL = "__label"  # the true label, once feedback arrives
BY = "__by"  # who asked: the caller's token prefix

# The columns every segment starts with, in this order.
META_COLUMNS = (ID, AT, VERSION, LATENCY_MS, ERROR)


def proba_column(cls: object) -> str:
    """The column of the probability of class `cls`: `__proba_<cls>`."""
    return f"{PROBA_PREFIX}{cls}"
