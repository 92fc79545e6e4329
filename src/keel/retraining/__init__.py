"""Automated retraining: model projects (keel.yaml), the training pipeline, the promotion gate,
and `ws.retraining`, which runs cycles and keeps every decision.

May import: keel.monitoring, keel.registry, keel.tracking, keel.data, keel.storage (through the
Workspace's objects), keel.entities, keel.errors, keel.refs; keel.edge.mcu for the parts a project's
edge targets may name (the builds themselves come through the EdgeBuilder the Workspace passes in).
"""

from keel.retraining.project import Project, ProjectError, load_project

__all__ = ["Project", "ProjectError", "load_project"]
