"""Dataset versions: content-addressed storage of tables and folders, schema, profile, diff.

May import: keel.storage and the base modules (errors, refs, entities, settings).
"""

from __future__ import annotations

from keel.data.datasets import Datasets, to_arrow
from keel.data.diff import diff_tables, js_distance, psi
from keel.data.profile import profile_table

__all__ = ["Datasets", "to_arrow", "diff_tables", "profile_table", "psi", "js_distance"]
