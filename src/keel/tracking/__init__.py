"""Experiment tracking: runs with params, metric series, tags, inputs, artifacts; run search.

May import: keel.data, keel.storage and the base modules.
"""

from __future__ import annotations

from keel.tracking._active import ActiveRun
from keel.tracking._checks import metric_point, params_text, tags_text
from keel.tracking.query import parse_filter, parse_order_by
from keel.tracking.runs import Runs

__all__ = ["Runs", "ActiveRun", "parse_filter", "parse_order_by", "metric_point", "params_text", "tags_text"]
