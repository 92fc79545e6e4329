"""Edge builds that follow the champion (issue 14's loop): the project's `edge:` targets built for a new
version and judged (keel.retraining.edge_gate), wired into the retraining as its EdgeBuilder, and the
two job kinds: `edge_build` (one `ws.edge.build`, queued from the CLI or the API) and `edge_follow`
(a new champion's targets under `on_failure: alert`, a failing build raising the edge-build-failed
alert, one per target)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from keel.entities import ModelVersion
from keel.errors import InvalidInputError
from keel.retraining.edge_gate import BuildVerdict, failed_build, judge_build
from keel.retraining.project import EdgeLoop
from keel.workspace.payloads import EdgeBuildPayload, EdgeFollowPayload

if TYPE_CHECKING:
    from keel.workspace.facade import Workspace

logger = logging.getLogger(__name__)

__all__ = ["FAILED_RULE", "EdgeFollower", "edge_build", "edge_follow"]

FAILED_RULE = (
    "edge-build-failed"  # the alert rule a failing build fires (metric edge_build_failed, feature: the target)
)


class EdgeFollower:
    """The retraining's EdgeBuilder: builds through `ws.edge`, queues through `ws.jobs`."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def check(self, version: ModelVersion, loop: EdgeLoop, X: Any, y: Any) -> list[BuildVerdict]:
        """Each target built for `version`, verified on (X, y) and judged. A build the builder refuses
        (too large for the part, a layer it cannot hold) or that breaks fails its target, not the cycle."""
        verdicts = []
        for target in loop.targets:
            try:
                build = self._ws.edge.build(
                    version.ref,
                    target=target.target,
                    quantize=target.quantize,
                    mcu=target.mcu,
                    qemu=loop.qemu,
                    holdout=None if X is None else (X, y),
                )
            except Exception as exc:  # one broken build is that target's failure, said in its verdict
                logger.warning("edge build %s of %s failed: %s", target.label, version.ref, exc)
                message = str(exc) if isinstance(exc, InvalidInputError) else f"{type(exc).__name__}: {exc}"
                verdicts.append(failed_build(target, message))
                continue
            verdicts.append(judge_build(build.report, target, loop, build=build.id))
        return verdicts

    def follow(self, version: ModelVersion, loop: EdgeLoop) -> int:
        """Queue the `edge_follow` job of a new champion; its id."""
        payload = EdgeFollowPayload(version.ref)
        job, _ = self._ws.jobs.enqueue(payload.kind, payload.to_dict(), dedup_key=payload.dedup_key)
        return job.id


def edge_build(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """One edge build (EdgeBuildPayload): what `keel edge build --queue` and POST /edge/builds?queue=true run."""
    p = EdgeBuildPayload.from_dict(payload)
    # what the payload leaves unset takes ws.edge.build's own defaults
    options: dict[str, Any] = {"target": p.target, "quantize": p.quantize, "mcu": p.mcu, "qemu": p.qemu}
    build = ws.edge.build(p.model, **{k: v for k, v in options.items() if v is not None})
    report = build.report
    return {
        "build": build.id,
        "model": build.model,
        "class_agreement": report.get("class_agreement"),
        "flash_bytes": (report.get("size") or {}).get("flash_bytes"),
    }


def edge_follow(ws: Workspace, payload: dict[str, Any]) -> dict[str, Any]:
    """A new champion's edge targets built and judged on its holdout; each failing one alerts."""
    version = ws.models.get(EdgeFollowPayload.from_dict(payload).model)
    loop = ws.retraining.project(version.name).edge
    if loop is None:
        return {"model": version.ref, "builds": [], "note": "the project names no edge targets"}
    held = ws.retraining.holdout(version)
    verdicts = EdgeFollower(ws).check(version, loop, *(held[:2] if held else (None, None)))
    failed = [v for v in verdicts if not v.passed]
    if failed:
        _alert(ws, version, failed)
    return {"model": version.ref, "builds": [v.to_dict() for v in verdicts], "failed": [v.target for v in failed]}


def _alert(ws: Workspace, version: ModelVersion, failed: list[BuildVerdict]) -> None:
    """One alert per failing target, through the model's edge-build-failed rule (added once)."""
    alerts = ws.monitoring.alerts
    try:
        if not any(r.name == FAILED_RULE for r in alerts.rules(version.name)):
            alerts.add_rule(version.name, FAILED_RULE, metric="edge_build_failed", op=">=", threshold=1.0, cooldown_s=0)
        for verdict in failed:
            context = {"model_version": version.ref, "build": verdict.build, "reason": verdict.reason}
            alerts.evaluate(version.name, [(verdict.target, "edge_build_failed", 1.0)], context=context)
    except Exception:  # alerting must not lose the result it reports: the verdicts are in the job's result
        logger.exception("raising the edge-build-failed alert of %s failed", version.ref)
