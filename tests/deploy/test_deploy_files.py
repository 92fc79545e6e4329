"""The deployment files (deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/) are valid against their
schemas and agree with each other and with keel, with no cluster and no Docker daemon (issue 17).
How each check works: deploychecks.py beside this file. Each check also runs on a broken copy, which
it must reject."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from typing import Any

import pytest
from deploychecks import (
    DEPLOY,
    K8S_VERSIONS,
    ROOT,
    Instruction,
    arg_defaults,
    by_kind,
    compose_document,
    compose_problems,
    containers,
    dockerfile_problems,
    exec_form,
    final_stage,
    interpolate,
    k8s_documents,
    k8s_problems,
    k8s_variable_names,
    keel_cli_problems,
    parse_dockerfile,
    pod_specs,
    unknown_keel_variables,
)

from keel.settings import Settings

PORT = 8080
UID = 10001
SERVER_EXTRAS = {"postgres", "s3", "server", "ray"}  # what server mode needs (docs/deployment.md)
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGE = f"keel:{PROJECT['version']}"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return k8s_documents()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_document()


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((DEPLOY / "Dockerfile").read_text())


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = by_kind(docs, kind, name)
    assert len(found) == 1, f"deploy/k8s/ must define exactly one {kind} {name}"
    return found[0]


def _keel_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == IMAGE}


# ---------------------------------------------------------------- schemas


def test_the_manifests_are_the_expected_objects(docs: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == [
        "ConfigMap/keel-config",
        "Deployment/keel-server",
        "Deployment/keel-worker",
        "RayCluster/keel-ray",
        "Secret/keel-secrets",
        "Service/keel-server",
    ]
    assert all("namespace" not in d["metadata"] for d in docs), "namespace-less: kubectl -n NS apply -f deploy/k8s/"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(docs: list[dict[str, Any]], version: str) -> None:
    assert [p for d in docs for p in k8s_problems(d, version)] == []


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    keys: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    *parents, last = keys
    node: Any = broken
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return broken


_DELETE = object()
_BROKEN_MANIFESTS = [
    ("Deployment", "keel-server", "spec.replicas", "two", "replicas"),
    ("Deployment", "keel-server", "spec.template.spec.containers.0.imagePullPolicyy", "Always", "imagePullPolicyy"),
    ("Deployment", "keel-worker", "spec.template.spec.containers.0.resources.requests.cpu", [1], "cpu"),
    ("Service", "keel-server", "spec.ports.0.port", "http", "port"),
    ("ConfigMap", "keel-config", "data.KEEL_EXECUTOR", 1, "KEEL_EXECUTOR"),
    ("RayCluster", "keel-ray", "spec.workerGroupSpecs.0.maxReplicas", "4", "maxReplicas"),
    ("RayCluster", "keel-ray", "spec.headGroupSpec.rayStartParams", _DELETE, "rayStartParams"),
    ("RayCluster", "keel-ray", "spec.headGroupSpec.autoscaling", True, "autoscaling"),
    ("RayCluster", "keel-ray", "spec.rayVersion", 2.6, "rayVersion"),
    ("RayCluster", "keel-ray", "spec.workerGroupSpecs.0.template.spec.containers.0.imag", "x", "imag"),
    ("RayCluster", "keel-ray", "spec.headGroupSpec.template.spec.securityContext.runAsUser", "keel", "runAsUser"),
]


@pytest.mark.parametrize(("kind", "name", "path", "value", "named"), _BROKEN_MANIFESTS)
def test_a_broken_manifest_is_rejected(
    docs: list[dict[str, Any]], kind: str, name: str, path: str, value: Any, named: str
) -> None:
    problems = k8s_problems(_set(_one(docs, kind, name), path, value), K8S_VERSIONS[-1])
    assert problems and named in " ".join(problems), problems


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("services.keel-server.depends_on.keel-init.condition", "service_ready", "service_ready"),
        ("services.keel-worker.healthchek", {"disable": True}, "healthchek"),
        ("services.postgres.healthcheck.retries", [12], "retries"),
    ],
)
def test_a_broken_compose_file_is_rejected(compose: dict[str, Any], path: str, value: Any, named: str) -> None:
    problems = compose_problems(_set(compose, path, value))
    assert problems and named in " ".join(problems), problems


# ---------------------------------------------------------------- the Dockerfile


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_the_port(dockerfile: list[Instruction]) -> None:
    assert dockerfile_problems(dockerfile, port=PORT) == []
    stage = final_stage(dockerfile)
    base = next(i.args for i in stage if i.keyword == "FROM")
    assert re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults(dockerfile)[m.group(1)], base) == "python:3.11-slim"
    assert [i.args for i in stage if i.keyword == "USER"][-1] == f"{UID}:{UID}"
    assert exec_form(next(i for i in stage if i.keyword == "ENTRYPOINT")) == ["keel"]


def test_dockerfile_installs_this_repository_with_the_server_mode_extras(dockerfile: list[Instruction]) -> None:
    runs = " ".join(i.args for i in final_stage(dockerfile) if i.keyword == "RUN")
    match = re.search(r"keelml-\*\.whl\)\"; .*?\"\$\{wheel\}\[([a-z0-9_,-]+)\]\"", runs)
    assert match, "the final stage must pip install the keelml wheel built from this repository, with extras"
    extras = set(match.group(1).split(","))
    assert SERVER_EXTRAS <= extras <= set(PROJECT["optional-dependencies"]), extras
    build = " ".join(f"{i.keyword} {i.args}" for i in dockerfile[: dockerfile.index(final_stage(dockerfile)[0])])
    assert "COPY src ./src" in build and "python -m build --wheel" in build


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("FROM python:3.11-slim\nRUNN pip install keelml\n", "unknown Dockerfile instruction 'RUNN'"),
        ("FROM python:3.11-slim\nRUN pip install \\\n", "ends inside a continued instruction"),
    ],
)
def test_a_dockerfile_with_an_unknown_instruction_is_rejected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_dockerfile(text)


@pytest.mark.parametrize(
    ("drop", "add", "problem"),
    [
        ("USER", "USER root", "non-root USER"),
        ("USER", "USER keel", "numeric non-root USER"),
        ("HEALTHCHECK", None, "HEALTHCHECK"),
        ("EXPOSE", "EXPOSE 8000", "EXPOSE must name port 8080"),
    ],
)
def test_a_broken_dockerfile_is_rejected(
    dockerfile: list[Instruction], drop: str, add: str | None, problem: str
) -> None:
    kept = [i for i in dockerfile if i.keyword != drop]
    if add is not None:
        keyword, _, args = add.partition(" ")
        kept.append(Instruction(999, keyword, args))
    assert any(problem in p for p in dockerfile_problems(kept, port=PORT))


# ---------------------------------------------------------------- agreement with keel and each other


def test_images_are_this_version_of_keel(docs: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    images = {c["image"] for _, c in containers(docs)}
    assert images == {IMAGE}, f"every container runs {IMAGE} (pyproject's version), got {images}"
    assert set(_keel_services(compose)) == {"create-bucket", "keel-init", "keel-server", "keel-worker"}
    assert compose["services"]["keel-server"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_every_keel_variable_is_a_setting(docs: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    compose_names = set(compose["x-keel-env"]) | {
        k for s in compose["services"].values() if isinstance(s.get("environment"), dict) for k in s["environment"]
    }
    assert unknown_keel_variables(k8s_variable_names(docs) | compose_names) == []
    assert unknown_keel_variables(["KEEL_STORE_ULR", "KEEL_HOME"]) == ["KEEL_STORE_ULR"]  # the check can fail


def test_keel_accepts_the_configured_values(docs: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    """Settings.from_env() raises on a value keel would refuse at start (a malformed JSON option, an executor)."""
    k8s_env = {**_one(docs, "ConfigMap", "keel-config")["data"], **_one(docs, "Secret", "keel-secrets")["stringData"]}
    k8s = Settings.from_env(k8s_env)
    assert (k8s.executor, k8s.store_url.split(":")[0], k8s.artifacts_url[:5]) == ("ray", "postgresql", "s3://")
    assert k8s.artifacts_options["client_kwargs"]["endpoint_url"].startswith("http")
    server_env = compose["services"]["keel-server"]["environment"]
    local = Settings.from_env({k: interpolate(str(v)) for k, v in server_env.items()})
    assert local.store_url == "postgresql://keel:keel-local-only@postgres:5432/keel"
    assert local.artifacts_options == {"client_kwargs": {"endpoint_url": "http://minio:9000"}}


def _keel_commands(
    docs: list[dict[str, Any]], compose: dict[str, Any], dockerfile: list[Instruction]
) -> dict[str, list[str]]:
    commands = {f"k8s {w}": c["args"] for w, c in containers(docs) if "args" in c}
    for name, service in _keel_services(compose).items():
        if "entrypoint" not in service:  # create-bucket runs python, not keel
            commands[f"compose {name}"] = service["command"]
    commands["Dockerfile CMD"] = exec_form([i for i in final_stage(dockerfile) if i.keyword == "CMD"][-1])
    return commands


def test_every_keel_command_line_parses(
    docs: list[dict[str, Any]], compose: dict[str, Any], dockerfile: list[Instruction]
) -> None:
    commands = _keel_commands(docs, compose, dockerfile)
    assert len(commands) == 7
    assert {w: p for w, args in commands.items() if (p := keel_cli_problems(args))} == {}
    for where in ("k8s Deployment/keel-server keel-server", "compose keel-server"):
        args = commands[where]
        assert args[0] == "serve" and "--workers" in args and args[args.index("--host") + 1] == "0.0.0.0"
        assert args[args.index("--port") + 1] == str(PORT)
    assert keel_cli_problems(["serve", "--wokers", "2"]) != []  # the check can fail


def test_the_documented_token_commands_parse() -> None:
    readme = (DEPLOY / "README.md").read_text() + (DEPLOY / "k8s" / "secret.yaml").read_text()
    found = re.findall(r"keel (token create [\w-]+ --role \w+)", readme)
    assert "token create admin --role admin" in found
    assert all(keel_cli_problems(f.split()) == [] for f in found)


def test_ports_agree(docs: list[dict[str, Any]], compose: dict[str, Any]) -> None:
    server = _one(docs, "Deployment", "keel-server")["spec"]["template"]["spec"]["containers"][0]
    assert [(p["name"], p["containerPort"]) for p in server["ports"]] == [("http", PORT)]
    service = _one(docs, "Service", "keel-server")["spec"]
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(PORT, "http")]
    assert compose["services"]["keel-server"]["ports"] == [f"{PORT}:{PORT}"]
    assert str(PORT) in " ".join(compose["services"]["keel-server"]["healthcheck"]["test"])


def test_service_selects_the_server_pods(docs: list[dict[str, Any]]) -> None:
    deployment = _one(docs, "Deployment", "keel-server")["spec"]
    selector = _one(docs, "Service", "keel-server")["spec"]["selector"]
    assert selector == deployment["selector"]["matchLabels"]
    assert selector.items() <= deployment["template"]["metadata"]["labels"].items()


def test_server_probes_ask_healthz_and_readyz_with_a_reader_token(docs: list[dict[str, Any]]) -> None:
    pod = _one(docs, "Deployment", "keel-server")["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz"
    probe = "\n".join(server["readinessProbe"]["exec"]["command"])
    assert f"http://127.0.0.1:{PORT}/readyz" in probe and "Bearer" in probe
    token_file = re.search(r'open\("([^"]+)"\)', probe)
    assert token_file
    mount = next(m for m in server["volumeMounts"] if token_file.group(1).startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": "keel-tokens", "items": [{"key": "probe", "path": "token"}]}
    # keel-tokens is created by commands, not a manifest: the docs must say how
    assert re.search(r"kubectl (-n \S+ )?create secret generic keel-tokens", (DEPLOY / "README.md").read_text())


def test_env_sources_exist(docs: list[dict[str, Any]]) -> None:
    defined = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for where, c in containers(docs):
        refs = {("ConfigMap", e["configMapRef"]["name"]) for e in c.get("envFrom", []) if "configMapRef" in e}
        refs |= {("Secret", e["secretRef"]["name"]) for e in c.get("envFrom", []) if "secretRef" in e}
        assert refs == {("ConfigMap", "keel-config"), ("Secret", "keel-secrets")} <= defined, where


def test_pods_run_as_the_images_non_root_user_with_limits(docs: list[dict[str, Any]]) -> None:
    specs = dict(pod_specs(docs))
    assert len(specs) == 4  # server, worker, Ray head, Ray workers
    for where, spec in specs.items():
        context = spec["securityContext"]
        assert (context["runAsNonRoot"], context["runAsUser"], context["runAsGroup"]) == (True, UID, UID), where
    for where, c in containers(docs):
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
        assert {"requests", "limits"} <= set(c["resources"]) and "memory" in c["resources"]["limits"], where


def test_ray_cluster_matches_the_image_and_the_address(
    docs: list[dict[str, Any]], dockerfile: list[Instruction]
) -> None:
    ray = _one(docs, "RayCluster", "keel-ray")
    assert ray["spec"]["rayVersion"] == arg_defaults(dockerfile)["RAY_VERSION"]
    config = _one(docs, "ConfigMap", "keel-config")["data"]
    head = ray["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    client_port = next(p["containerPort"] for p in head["ports"] if p["name"] == "client")
    # KubeRay names the head Service <RayCluster name>-head-svc
    assert config["KEEL_RAY_ADDRESS"] == f"ray://{ray['metadata']['name']}-head-svc:{client_port}"
    assert config["KEEL_EXECUTOR"] == "ray"
    groups = ray["spec"]["workerGroupSpecs"]
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)


def test_compose_starts_in_order_and_the_worker_skips_the_http_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            needed = (
                "service_completed_successfully" if services[dependency].get("restart") == "no" else "service_healthy"
            )
            assert rule["condition"] == needed, f"{name} -> {dependency}"
            if needed == "service_healthy":
                assert "test" in services[dependency]["healthcheck"], dependency
    # every keel container but the server would fail the image's HEALTHCHECK (nothing listens on 8080)
    assert {n for n, s in _keel_services(compose).items() if s.get("healthcheck", {}).get("disable")} == {
        "create-bucket",
        "keel-init",
        "keel-worker",
    }


def test_vendored_schemas_say_where_they_come_from() -> None:
    for name in ("compose-spec.json", "raycluster-ray.io-v1.json"):
        comment = json.loads((ROOT / "tests" / "deploy" / "schemas" / name).read_text())["$comment"]
        assert re.search(r"at commit [0-9a-f]{40}", comment) and "Trimmed" in comment, name
