"""Causal studies (records): versioned causal questions over dataset versions, and their estimates.

A study version holds the graph, the treatment, the outcome, the adjustment set and how the
effect was identified, with lineage to the dataset version it reads; estimates are stored per
study version. This package stores and reads plain values: the graph checking, identification
and estimation are compute (keel.causal), which the workspace (keel.workspace.causal) calls and
then records here.

May import: keel.storage and the base modules (errors, refs, entities, settings).
"""

from __future__ import annotations

from keel.studies.studies import Studies

__all__ = ["Studies"]
