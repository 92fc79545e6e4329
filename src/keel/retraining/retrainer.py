"""`ws.retraining`: train a project's model, judge it against the champion, promote it or not,
and keep every decision with its evidence.

One cycle (`train` for a project file, `retrain` for a stored project): pick the training data
(the pinned or latest dataset version; with `data: reference+production`, plus the labelled
production rows exported from the prediction log as a new dataset version), split, fit, evaluate,
track the run, register the version (lineage: run and dataset versions), point `@challenger` at
it, score the champion on the same holdout, run the gate, then move `@champion` (or wait for
approval). A failure anywhere leaves the champion as it was, records a `failed` decision and
raises the `retraining-failed` alert. `_cycle_data.py` assembles the training set and the holdout,
and scores the champion on it.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.entities import ModelVersion, RetrainDecision
from keel.errors import InvalidInputError, KeelError, NotFoundError
from keel.refs import CHALLENGER, CHAMPION
from keel.retraining._cycle_data import (
    TrainingSet,
    apply_monitoring,
    gate_checks,
    jsonable,
    recorded_holdout,
    run_params,
    score_champion,
    shadow_metrics,
    shadow_name,
    training_set,
)
from keel.retraining.edge_gate import EdgeBuilder, edge_checks, follow_edge
from keel.retraining.gate import Verdict, judge
from keel.retraining.pipeline import evaluate, fit, output_kind
from keel.retraining.project import PolicyTrainer, Project, check_imports, load_project
from keel.retraining.triggers import AUTOMATIC, CYCLE_TRIGGERS, PROMOTIONS, Due, due
from keel.retraining.tuning import search, with_params

if TYPE_CHECKING:
    from keel.data import Datasets
    from keel.monitoring.monitor import Monitoring
    from keel.registry import Models
    from keel.storage import MetadataStore
    from keel.tracking import Runs

logger = logging.getLogger(__name__)

__all__ = ["Retraining", "shadow_name"]


class Retraining:
    def __init__(
        self,
        meta: MetadataStore,
        *,
        datasets: Datasets,
        runs: Runs,
        models: Models,
        monitoring: Monitoring,
        author: str,
        edge: EdgeBuilder | None = None,
        policies: PolicyTrainer | None = None,
    ) -> None:
        self._store = meta.retraining
        self._edge = edge
        self._policies = policies
        self._datasets = datasets
        self._runs = runs
        self._models = models
        self._monitoring = monitoring
        self._author = author

    # -- projects ------------------------------------------------------------------------------
    def save(self, project: Project) -> Project:
        """Store (or replace) the project of `project.model`; retraining reads it from here."""
        self._store.save_project(project.model, project.to_dict(), project.source)
        return project

    def project(self, model: str) -> Project:
        spec, source = self._store.project(model)
        return Project.from_dict(spec, source=source)

    def projects(self) -> list[Project]:
        return [Project.from_dict(spec, source=name) for name, spec in self._store.projects()]

    # -- cycles --------------------------------------------------------------------------------
    def train(
        self,
        project: Project | str | Path,
        *,
        dataset: str | None = None,
        trigger: str = "manual",
        detail: dict[str, Any] | None = None,
    ) -> RetrainDecision:
        """Store the project and run one cycle. `project` is a Project or the path of a keel.yaml."""
        project = load_project(project) if not isinstance(project, Project) else check_imports(project)
        self.save(project)
        return self._cycle(project, trigger, detail or {}, dataset)

    def retrain(
        self, model: str, *, trigger: str = "manual", detail: dict[str, Any] | None = None, dataset: str | None = None
    ) -> RetrainDecision:
        """One cycle for a model whose project is stored (`keel retrain NAME`)."""
        return self._cycle(self.project(model), trigger, detail or {}, dataset)

    def tune(self, model: str, *, use_ray: bool = False, dataset: str | None = None) -> RetrainDecision:
        """Search the project's `tuning` space on the training data (Ray Tune with `use_ray`), then run
        the cycle with the best parameters: the gate decides as for any challenger (`keel tune NAME`)."""
        project = self.project(model)
        if project.tuning is None:
            raise InvalidInputError(
                f"The project of {model!r} has no tuning section; add tuning: {{params: ..., trials: N}}"
            )
        return self._cycle(
            project, "tune", {"engine": "ray tune" if use_ray else "random search"}, dataset, tune_with_ray=use_ray
        )

    def _cycle(
        self,
        project: Project,
        trigger: str,
        detail: dict[str, Any],
        dataset: str | None,
        tune_with_ray: bool | None = None,
    ) -> RetrainDecision:
        name = project.model
        champion = self._champion(name)
        evidence: dict[str, Any] = {"trigger": {"kind": trigger, **detail}}
        run_id: str | None = None
        candidate: ModelVersion | None = None
        if project.policy is not None or project.lm is not None:  # the workspace trains and scores both
            return self._policy_cycle(project, champion, trigger, evidence, dataset)
        try:
            data = training_set(
                project, dataset, champion, evidence, datasets=self._datasets, predictions=self._monitoring.predictions
            )
            if tune_with_ray is not None:
                found = search(project, data.X_train, data.y_train, use_ray=tune_with_ray)
                evidence["tuning"] = found
                project = with_params(project, found["best"])
            with self._runs.start(
                name,
                name=f"{trigger}-training",
                params=run_params(project, trigger),
                inputs=[data.data],
                tags={"keel.trigger": trigger, "keel.project": project.source},
            ) as run:
                run_id = run.id
                model = fit(project, data.X_train, data.y_train)
                kind = output_kind(model)
                metrics = evaluate(model, data.X_test, data.y_test, project.evaluation.metrics, kind)
                run.log_metrics(metrics)
            candidate = self._challenger(name, model, run_id, data, metrics, trigger)
            champion_metrics = score_champion(self._models, champion, data.X_test, data.y_test, project, kind, evidence)
            custom = gate_checks(
                self._models, project, model, champion, data.X_test, data.y_test, metrics, champion_metrics
            )
            verdict = judge(project, metrics, champion_metrics, custom=custom)
            if verdict.passed and project.edge is not None and project.edge.on_failure == "gate":
                custom.update(edge_checks(self._edge, project, candidate, data.X_test, data.y_test, evidence))
                verdict = judge(project, metrics, champion_metrics, custom=custom)
        except Exception as exc:  # a failed cycle never touches the champion
            return self._failed(project, champion, trigger, evidence, run_id, candidate, exc)
        evidence["metrics"] = {"challenger": metrics, "champion": champion_metrics}
        return self._decide(project, verdict, candidate, champion, trigger, evidence, run_id)

    def _policy_cycle(
        self,
        project: Project,
        champion: ModelVersion | None,
        trigger: str,
        evidence: dict[str, Any],
        dataset: str | None,
    ) -> RetrainDecision:
        """A policy or lm project's cycle: the workspace trains and registers the challenger (a policy on the
        refitted twin) and scores both on the same data (demand; held-out texts); the gate judges them."""
        candidate = run_id = None
        try:
            if self._policies is None:
                raise InvalidInputError(f"{project.model} trains a policy or a language model; this workspace cannot")
            candidate, metrics, champion_metrics, run_id = self._policies.train(project, dataset, champion, evidence)
            self._models.set_alias(project.model, CHALLENGER, version=candidate.version, reason=f"{trigger} retraining")
            verdict = judge(project, metrics, champion_metrics)
        except Exception as exc:  # a failed cycle never touches the champion
            return self._failed(project, champion, trigger, evidence, run_id, candidate, exc)
        evidence["metrics"] = {"challenger": metrics, "champion": champion_metrics}
        return self._decide(project, verdict, candidate, champion, trigger, evidence, run_id)

    def _challenger(
        self, name: str, model: Any, run_id: str, data: TrainingSet, metrics: dict[str, float], trigger: str
    ) -> ModelVersion:
        """Register the fitted model (lineage: its run and dataset version) and point @challenger at it."""
        candidate = self._models.register(
            name,
            model,
            run=run_id,
            X=data.X_train,
            metrics=metrics,
            description=f"trained by keel ({trigger}) on {data.data.ref}",
        )
        self._models.set_alias(
            name, CHALLENGER, version=candidate.version, reason=f"{trigger} retraining on {data.data.ref}"
        )
        return candidate

    def _decide(
        self,
        project: Project,
        verdict: Verdict,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        trigger: str,
        evidence: dict[str, Any],
        run_id: str | None,
    ) -> RetrainDecision:
        """Act on the gate's verdict (promote, shadow, wait for approval or reject) and record it."""
        name = project.model
        evidence["gate"] = {"passed": verdict.passed, "reasons": list(verdict.reasons), "checks": verdict.checks}
        outcome = self._outcome(project, verdict, candidate, champion)
        if outcome == "shadowing":  # say which way shadow mode went, in the words of the outcome
            evidence["gate"]["reasons"].append(
                f"shadowing: v{candidate.version} scores live traffic silently beside the champion "
                f"until {project.gate.shadow_rows} labelled requests, then the gate decides on them"
            )
        elif project.gate.shadow_rows and champion is None and outcome == "promoted":
            evidence["gate"]["reasons"].append("no shadow mode for the first version: there is no champion to shadow")
        if outcome == "promoted":
            follow_edge(self._edge, project, candidate, evidence)
        decision = self._store.record(
            model=name,
            version=candidate.version,
            champion_version=champion.version if champion else None,
            trigger=trigger,
            outcome=outcome,
            evidence=jsonable(evidence),
            run_id=run_id,
            author=self._author,
        )
        logger.info("retraining %s (%s): v%d %s", name, trigger, candidate.version, outcome)
        apply_monitoring(self._monitoring, project)
        return decision

    def _outcome(
        self,
        project: Project,
        verdict: Verdict,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        *,
        shadowed: bool = False,
    ) -> str:
        if not verdict.passed:
            return "rejected"
        if project.gate.shadow_rows and champion is not None and not shadowed:
            return "shadowing"  # @challenger scores live traffic silently; judge_shadows() decides
        if project.gate.approval and champion is not None:
            return "awaiting_approval"
        reason = "; ".join(verdict.reasons)
        self._models.set_alias(
            project.model, CHAMPION, version=candidate.version, reason=f"gate passed: {reason}"[:2000]
        )
        return "promoted"

    def _failed(
        self,
        project: Project,
        champion: ModelVersion | None,
        trigger: str,
        evidence: dict[str, Any],
        run_id: str | None,
        candidate: ModelVersion | None,
        exc: BaseException,
    ) -> RetrainDecision:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeelError) else str(exc)
        evidence["error"] = message
        evidence["traceback"] = traceback.format_exception(exc)[-3:]
        logger.error("retraining %s (%s) failed: %s", project.model, trigger, message)
        decision = self._store.record(
            model=project.model,
            version=candidate.version if candidate else None,
            champion_version=champion.version if champion else None,
            trigger=trigger,
            outcome="failed",
            evidence=jsonable(evidence),
            run_id=run_id,
            author=self._author,
        )
        try:
            alerts = self._monitoring.alerts
            kind = "lm" if project.lm else champion.signature.output if champion and champion.signature else "other"
            alerts.ensure_default_rules(project.model, output_kind=kind)
            alerts.evaluate(
                project.model,
                [("", "retraining_failed", 1.0)],
                context={"decision": decision.id, "trigger": trigger, "error": message},
            )
        except Exception:  # alerting must not hide the failure it reports
            logger.exception("raising the retraining-failed alert for %s failed", project.model)
        return decision

    # -- shadow mode ---------------------------------------------------------------------------
    def shadows(self) -> dict[str, int]:
        """Models whose challenger is in shadow mode: {model: challenger version} (what the server
        scores silently beside the champion, logging it as model '<name>.shadow')."""
        out = {}
        for project in self.projects():
            if not project.gate.shadow_rows:
                continue
            last = self._store.last(project.model, triggers=CYCLE_TRIGGERS + ("shadow", "approval", "rollback"))
            if last is not None and last.outcome == "shadowing" and last.version is not None:
                out[project.model] = last.version
        return out

    def judge_shadows(self) -> list[RetrainDecision]:
        """For each model in shadow mode with `shadow_rows` labelled requests scored by both the
        champion and the challenger: the gate on those live rows, then promotion or rejection."""
        decisions = []
        for model, version in self.shadows().items():
            project = self.project(model)
            champion = self._champion(model)
            challenger_info = self._models.get(f"{model}@{version}")
            scored = None if champion is None else shadow_metrics(self._monitoring, project, champion, challenger_info)
            if champion is None or scored is None:
                continue
            metrics, champion_metrics, rows = scored
            verdict = judge(project, metrics, champion_metrics)
            outcome = self._outcome(project, verdict, challenger_info, champion, shadowed=True)
            evidence = {
                "trigger": {"kind": "shadow", "rows": rows},
                "metrics": {"challenger": metrics, "champion": champion_metrics},
                "gate": {"passed": verdict.passed, "reasons": list(verdict.reasons), "checks": verdict.checks},
                "data": {"live_labelled_rows": rows},
            }
            if outcome == "promoted":
                follow_edge(self._edge, project, challenger_info, evidence)
            decisions.append(
                self._store.record(
                    model=model,
                    version=version,
                    champion_version=champion.version,
                    trigger="shadow",
                    outcome=outcome,
                    evidence=jsonable(evidence),
                    run_id=challenger_info.run_id,
                    author=self._author,
                )
            )
        return decisions

    # -- triggers ------------------------------------------------------------------------------
    def due(self, at: datetime | None = None) -> list[tuple[str, Due]]:
        """Models whose project's automatic triggers say: retrain now (see keel.retraining.triggers)."""
        at = at or datetime.now(UTC)
        out = []
        for project in self.projects():
            if not any(t in AUTOMATIC for t in project.retraining.triggers):
                continue
            name = project.model
            dataset = project.data.dataset
            try:
                latest = None if "@" in dataset else self._datasets.get(f"{dataset}@latest").ref
            except NotFoundError:
                latest = None
            # The first version has no predecessor whose checks could re-trigger: only a promotion
            # that replaced a champion (or an approval, a rollback) starts a cool-down.
            promotions = [
                d
                for d in self._store.decisions(name, limit=50)
                if d.outcome in PROMOTIONS and d.champion_version is not None
            ]
            moves = self._models.alias_history(name, CHAMPION)
            found = due(
                project,
                at=at,
                last_cycle=self._store.last(name, triggers=CYCLE_TRIGGERS),
                alerts=self._monitoring.alerts.list(model=name, status="active"),
                latest_dataset=latest,
                promoted_at=promotions[0].at if promotions else None,
                champion_moved_at=moves[-1].at if moves else None,
            )
            if found is not None:
                out.append((name, found))
        return out

    def run_due(self, at: datetime | None = None) -> list[RetrainDecision]:
        """Run one cycle for every model that is due; a broken project is logged and skipped.

        When an alert-triggered cycle promotes a new champion, the alerts that started it are
        resolved: the monitor opens new ones if the new champion drifts too.
        """
        decisions = []
        for name, trigger in self.due(at):
            try:
                decisions.append(self.run_one(name, trigger=trigger.trigger, detail=trigger.detail))
            except Exception:  # one broken project must not stop the others
                logger.exception("automatic retraining of %s failed to start", name)
        return decisions

    def run_one(
        self, model: str, *, trigger: str, detail: dict[str, Any], dataset: str | None = None
    ) -> RetrainDecision:
        """One triggered cycle (what a `retrain` job runs); a promotion resolves the alerts that started it."""
        decision = self.retrain(model, trigger=trigger, detail=detail, dataset=dataset)
        if decision.outcome == "promoted" and trigger == "alert":
            for alert_id in detail.get("alerts", []):
                self._monitoring.alerts.resolve(alert_id, note=f"retrained: champion is now v{decision.version}")
        return decision

    def record_crash(self, model: str, *, trigger: str, error: str) -> RetrainDecision:
        """A cycle that never finished (its worker died): recorded as failed, with the alert."""
        project = self.project(model)
        return self._failed(
            project,
            self._champion(model),
            trigger,
            {"trigger": {"kind": trigger}},
            None,
            None,
            RuntimeError(f"the retraining crashed: {error}"),
        )

    # -- approval and rollback -------------------------------------------------------------------
    def approve(self, model: str, version: int, *, reason: str = "") -> RetrainDecision:
        """Promote a version that passed its gate and waits for approval (`keel models approve`)."""
        waiting = [
            d for d in self._store.decisions(model, limit=1000) if d.version == version and d.trigger != "rollback"
        ]
        if not waiting or waiting[0].outcome != "awaiting_approval":
            state = waiting[0].outcome if waiting else "no retraining decision"
            raise InvalidInputError(
                f"{model} v{version} is not awaiting approval ({state}); see 'keel models timeline {model}'"
            )
        champion = self._champion(model)
        self._models.set_alias(model, CHAMPION, version=version, reason=reason or f"approved by {self._author}")
        evidence: dict[str, Any] = {"approves": waiting[0].id, "reason": reason}
        follow_edge(self._edge, self.project(model), self._models.get(f"{model}@{version}"), evidence)
        return self._store.record(
            model=model,
            version=version,
            champion_version=champion.version if champion else None,
            trigger="approval",
            outcome="approved",
            evidence=evidence,
            run_id=waiting[0].run_id,
            author=self._author,
        )

    def rollback(self, model: str, *, reason: str = "") -> RetrainDecision:
        """Point @champion back at the version it pointed at before its last move."""
        history = self._models.alias_history(model, CHAMPION)
        current = self._champion(model)
        if current is None or not history:
            raise InvalidInputError(f"{model} has no champion to roll back")
        last = history[-1]
        previous = last.from_version
        if previous is None:
            raise InvalidInputError(
                f"{model}@{CHAMPION} has pointed only at v{current.version}; there is nothing to roll back to"
            )
        self._models.set_alias(model, CHAMPION, version=previous, reason=reason or f"rollback from v{current.version}")
        return self._store.record(
            model=model,
            version=previous,
            champion_version=current.version,
            trigger="rollback",
            outcome="rolled_back",
            evidence={"from": current.version, "to": previous, "reason": reason},
            run_id=None,
            author=self._author,
        )

    def decisions(self, model: str, *, limit: int = 100) -> list[RetrainDecision]:
        """The model's timeline, newest first."""
        found = self._store.decisions(model, limit=limit)
        if not found:
            self._models.versions(model)  # NotFoundError for an unknown model
        return found

    def holdout(self, version: ModelVersion) -> tuple[Any, Any, str] | None:
        """The rows a retraining cycle held out when it trained `version` (X, y, where from), or None
        for a version no cycle trained (or one judged on production rows, which are not kept apart)."""
        for d in self._store.decisions(version.name, limit=1000):
            if d.version == version.version and d.trigger in CYCLE_TRIGGERS and d.outcome != "failed":
                return recorded_holdout(self.project(version.name), version, d.evidence, datasets=self._datasets)
        return None

    # -- helpers -------------------------------------------------------------------------------
    def _champion(self, model: str) -> ModelVersion | None:
        try:
            return self._models.get(f"{model}@{CHAMPION}")
        except NotFoundError:
            return None
