"""The model registry: versions with lineage, aliases with an audit history, flavours, signatures.

May import: keel.tracking, keel.data, keel.storage and the base modules.
"""

from __future__ import annotations

from keel.registry.flavor_base import Flavor
from keel.registry.flavors import FLAVORS, flavor_for, get_flavor
from keel.registry.loaded import LoadedModel, predictions_frame
from keel.registry.models import Models, params_of
from keel.registry.signature import infer_signature, validate_input

__all__ = [
    "Models",
    "LoadedModel",
    "Flavor",
    "FLAVORS",
    "flavor_for",
    "get_flavor",
    "infer_signature",
    "validate_input",
    "predictions_frame",
    "params_of",
]
