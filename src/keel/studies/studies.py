"""Study versions and their estimates: `Studies`, over one narrow store (keel.storage.studies)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from keel.entities import DatasetVersion
from keel.entities_studies import RESULT_KINDS, Study, StudyEstimate, StudyResult
from keel.errors import InvalidInputError
from keel.refs import Ref, check_name, parse_ref
from keel.storage import MetadataStore

__all__ = ["Studies", "ESTIMATE_FIELDS"]

# What a stored estimate is made of; `details` carries the rest (overlap, notes, trimming, ...).
ESTIMATE_FIELDS = ("estimator", "estimand", "value", "stderr", "ci_low", "ci_high", "interval_method", "n", "details")
_MAX_DESCRIPTION = 10_000


class Studies:
    """The causal studies of one workspace (the records behind `ws.causal`)."""

    def __init__(self, meta: MetadataStore, *, author: str) -> None:
        self._meta = meta
        self._author = author

    def check_name(self, name: str) -> str:
        return check_name(name, what="study name")

    def add(
        self,
        name: str,
        dataset: DatasetVersion,
        *,
        edges: Sequence[tuple[str, str]],
        latent: Sequence[str],
        treatment: str,
        outcome: str,
        covariates: Sequence[str],
        identification: Mapping[str, Any],
        description: str = "",
        model: str | None = None,
    ) -> Study:
        """Store the next version of study `name` (the caller has checked the graph and identified it;
        `model` is the model version it explains, 'credit@3', checked to exist by the caller)."""
        self.check_name(name)
        if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
            raise InvalidInputError(f"A study description is text of at most {_MAX_DESCRIPTION:,} characters")
        spec: dict[str, Any] = {
            "edges": [[str(a), str(b)] for a, b in edges],
            "latent": [str(node) for node in latent],
            "covariates": [str(c) for c in covariates],
            "identification": dict(identification),
        }
        if model is not None:
            spec["model"] = str(model)
        return self._meta.studies.add(
            name,
            dataset=(dataset.name, dataset.version, dataset.digest),
            treatment=treatment,
            outcome=outcome,
            spec=spec,
            description=description,
            author=self._author,
        )

    def get(self, ref: str | Study) -> Study:
        """The version a reference names: 'nsw', 'nsw@2' or 'nsw@latest'."""
        if isinstance(ref, Study):
            return ref
        return self._meta.studies.get(_ref(ref))

    def list(self) -> builtins.list[Study]:
        """The latest version of every study."""
        return self._meta.studies.list()

    def versions(self, name: str) -> builtins.list[Study]:
        return self._meta.studies.versions(self.check_name(name))

    def add_estimates(self, study: Study, records: Sequence[Mapping[str, Any]]) -> builtins.list[StudyEstimate]:
        """Store estimates of `study`; each record has the keys of ESTIMATE_FIELDS."""
        rows = []
        for record in records:
            missing = [key for key in ESTIMATE_FIELDS if key not in record]
            if missing:
                raise InvalidInputError(f"An estimate record lacks {missing}")
            rows.append({key: record[key] for key in ESTIMATE_FIELDS})
        return self._meta.studies.add_estimates(Ref(study.name, version=study.version), rows)

    def estimates(self, ref: str | Study) -> builtins.list[StudyEstimate]:
        """Every estimate stored for one study version, oldest first."""
        study = self.get(ref)
        return self._meta.studies.estimates(Ref(study.name, version=study.version))

    def add_result(self, study: Study, kind: str, payload: Mapping[str, Any]) -> StudyResult:
        """Store a result of `study` (`kind` one of RESULT_KINDS; `payload` plain JSON)."""
        if kind not in RESULT_KINDS:
            raise InvalidInputError(f"Unknown study result kind {kind!r}; known: {', '.join(RESULT_KINDS)}")
        return self._meta.studies.add_result(
            Ref(study.name, version=study.version), kind, dict(payload), author=self._author
        )

    def results(self, ref: str | Study, kind: str | None = None) -> builtins.list[StudyResult]:
        """The stored results of one study version (of `kind`, or every kind), oldest first."""
        if kind is not None and kind not in RESULT_KINDS:
            raise InvalidInputError(f"Unknown study result kind {kind!r}; known: {', '.join(RESULT_KINDS)}")
        study = self.get(ref)
        return self._meta.studies.results(Ref(study.name, version=study.version), kind)


def _ref(text: str) -> Ref:
    ref = parse_ref(text)
    if ref.alias is not None:
        raise InvalidInputError(f"Study reference {text!r}: studies are addressed by version number or 'latest'")
    return ref
