"""Checks of the deployment files under deploy/, without a cluster or a Docker daemon.

Each check takes the parsed files and returns the problems it finds (an empty list: none), so that
the tests can run it on the real files and on broken copies of them.

- Kubernetes manifests: kubernetes-validate's strict schemas (an unknown field is an error) for each
  Kubernetes version in K8S_VERSIONS.
- RayCluster (a custom resource, which kubernetes-validate does not know): the vendored subset of
  KubeRay's CRD schema in schemas/, and its pod templates against Kubernetes' PodTemplateSpec.
- deploy/compose.yaml: the Compose Specification's JSON schema (vendored in schemas/).
- deploy/Dockerfile: parsed here, instruction by instruction.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The oldest Kubernetes these manifests support and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30", "1.37")
DOCKERFILE_INSTRUCTIONS = frozenset(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL STOPSIGNAL USER "
    "VOLUME WORKDIR".split()
)


# ---------------------------------------------------------------- loading


def k8s_documents() -> list[dict[str, Any]]:
    """Every object of deploy/k8s/*.yaml, in file order."""
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def compose_document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def by_kind(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def pod_specs(docs: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every Deployment and every RayCluster group."""
    for d in docs:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Deployment":
            yield where, d["spec"]["template"]["spec"]
        elif d["kind"] == "RayCluster":
            yield f"{where} head", d["spec"]["headGroupSpec"]["template"]["spec"]
            for group in d["spec"].get("workerGroupSpecs", []):
                yield f"{where} {group['groupName']}", group["template"]["spec"]


def containers(docs: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            yield f"{where} {c['name']}", c


# ---------------------------------------------------------------- schemas


def _where(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top)"


@functools.cache
def _k8s_schema_dir(version: str) -> Any:
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    names = sorted(p.name for p in base.iterdir() if re.fullmatch(rf"v{re.escape(version)}\.\d+-local-strict", p.name))
    if not names:
        raise LookupError(f"kubernetes-validate has no strict schemas for Kubernetes {version}")
    return base / names[-1]


@functools.cache
def k8s_validator(version: str, filename: str) -> Any:
    """A validator for one strict Kubernetes schema file (`podtemplatespec-v1.json`), as kubernetes-validate builds it."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
    from referencing import Registry, Resource

    folder = _k8s_schema_dir(version)
    schema = json.loads((folder / filename).read_text())
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return Draft202012Validator(schema, registry=registry)


def _k8s_filename(doc: dict[str, Any]) -> str:
    # kubernetes-validate's naming: apps/v1 Deployment -> deployment-apps-v1.json, v1 Service -> service-v1.json
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(doc.get("apiVersion", "")))
    return f"{str(doc.get('kind', '')).lower()}-{api}.json"


def k8s_problems(doc: dict[str, Any], version: str) -> list[str]:
    """Schema errors of one manifest for Kubernetes `version` (strict: unknown fields are errors)."""
    if doc.get("kind") == "RayCluster":
        return raycluster_problems(doc, version)
    import kubernetes_validate  # type: ignore[import-untyped]

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc.get('kind')}: {_where(exc)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def raycluster_problems(doc: dict[str, Any], version: str) -> list[str]:
    """The RayCluster against the vendored CRD schema, its templates against Kubernetes' own schemas."""
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMAS / "raycluster-ray.io-v1.json").read_text())
    problems = [f"RayCluster: {_where(e)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(doc)]
    spec: dict[str, Any] = doc["spec"] if isinstance(doc.get("spec"), dict) else {}
    head: dict[str, Any] = spec["headGroupSpec"] if isinstance(spec.get("headGroupSpec"), dict) else {}
    embedded = [("spec/headGroupSpec/template", head.get("template"), "podtemplatespec-v1.json")]
    embedded.append(("spec/headGroupSpec/headService", head.get("headService"), "service-v1.json"))
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        if isinstance(group, dict):
            embedded.append((f"spec/workerGroupSpecs/{i}/template", group.get("template"), "podtemplatespec-v1.json"))
    for where, value, filename in embedded:
        if isinstance(value, dict):
            validator = k8s_validator(version, filename)
            problems += [f"RayCluster: {where}/{_where(e)}: {e.message}" for e in validator.iter_errors(value)]
    return problems


def compose_problems(doc: dict[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return [f"compose: {_where(e)}: {e.message}" for e in Draft7Validator(schema).iter_errors(doc)]


# ---------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: continuation lines joined, comments dropped; an unknown
    instruction is a ValueError (Docker refuses it too)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continued instruction (as Docker does)
        if not pending:
            start = number
        pending.append(stripped[:-1] if stripped.endswith("\\") else stripped)
        if stripped.endswith("\\"):
            continue
        keyword, _, args = " ".join(pending).partition(" ")
        pending = []
        if keyword.upper() not in DOCKERFILE_INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown Dockerfile instruction {keyword!r}")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    if pending:
        raise ValueError("the Dockerfile ends inside a continued instruction")
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    if not starts:
        raise ValueError("no FROM instruction")
    return instructions[starts[-1] :]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """ARG NAME=default values (the last one of each name)."""
    return dict(ins.args.split("=", 1) for ins in instructions if ins.keyword == "ARG" and "=" in ins.args)


def exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"line {ins.line}: {ins.keyword} must be in exec form (a JSON list of strings)")
    return value


def dockerfile_problems(instructions: list[Instruction], *, port: int) -> list[str]:
    """The image runs as a numeric non-root user, checks /healthz on `port` and exposes `port`."""
    stage = final_stage(instructions)
    problems = []
    users = [ins.args for ins in stage if ins.keyword == "USER"]
    uid = users[-1].split(":")[0] if users else "root"
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"the final stage must end on a numeric non-root USER (Kubernetes' runAsNonRoot), got {uid!r}")
    checks = [ins for ins in stage if ins.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].args.upper().startswith("NONE") or f":{port}/healthz" not in checks[-1].args:
        problems.append(f"the final stage needs a HEALTHCHECK on http://127.0.0.1:{port}/healthz")
    exposed = [p.split("/")[0] for ins in stage if ins.keyword == "EXPOSE" for p in ins.args.split()]
    if exposed != [str(port)]:
        problems.append(f"EXPOSE must name port {port} only, got {exposed}")
    return problems


# ---------------------------------------------------------------- cross-checks


def setting_names() -> frozenset[str]:
    from keel.settings import Settings

    return frozenset(f"KEEL_{f.name.upper()}" for f in dataclasses.fields(Settings))


def unknown_keel_variables(names: Iterable[str]) -> list[str]:
    """KEEL_* names that are no setting of keel.settings (a typo keel would silently ignore)."""
    known = setting_names()
    return sorted({n for n in names if n.startswith("KEEL_") and n not in known})


def k8s_variable_names(docs: Iterable[dict[str, Any]]) -> set[str]:
    docs = list(docs)
    names = {k for d in by_kind(docs, "ConfigMap") for k in d.get("data", {})}
    names |= {k for d in by_kind(docs, "Secret") for k in {**d.get("data", {}), **d.get("stringData", {})}}
    names |= {e["name"] for _, c in containers(docs) for e in c.get("env", [])}
    return names


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} and ${NAME-default} with NAME unset: the default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


def keel_cli_problems(args: list[str]) -> list[str]:
    """Whether `keel ARGS` parses as keel's own CLI would parse it (options exist, values have their types)."""
    import typer

    from keel.cli import app

    # Typer 0.29 ships its own copy of click: take its exception base class from a public one.
    click_exception: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("keel", [], resilient_parsing=True)  # a parent context for the subcommands
    rest = list(args)
    try:
        while hasattr(command, "get_command"):  # a group: the next word names its subcommand
            if not rest or rest[0].startswith("-"):
                return [f"keel {' '.join(args)}: no command after the group's name"]
            name, rest = rest[0], rest[1:]
            sub = command.get_command(ctx, name)
            if sub is None:
                return [f"keel {' '.join(args)}: no such command {name!r}"]
            command, ctx = sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        command.make_context(ctx.info_name, rest, parent=ctx.parent).close()
    except click_exception as exc:
        return [f"keel {' '.join(args)}: {exc.format_message()}"]
    return []
