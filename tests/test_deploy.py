"""deploy/: the kustomizations render to valid Kubernetes objects that fit the gateway and image.

Offline: a small renderer for the kustomize subset that deploy/k8s uses (checked against
`kustomize build` / `kubectl kustomize` when one is on PATH), and the Kubernetes OpenAPI schemas
bundled in the `kubernetes-validate` wheel.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import pytest
import yaml
from pytest_aiohttp import AiohttpClient

from gateway.app import create_app
from gateway.config import Settings, load

ROOT: Final = Path(__file__).resolve().parent.parent
DEPLOY: Final = ROOT / "deploy"
OVERLAYS: Final = {
    "base": DEPLOY / "k8s" / "base",
    "production": DEPLOY / "k8s" / "overlays" / "production",
}
# The oldest Kubernetes the manifests claim to support, and the newest the wheel knows.
KUBE_VERSIONS: Final = ("1.29.0", kubernetes_validate.latest_version())

Obj = dict[str, Any]


# --- A renderer for the kustomize subset used in deploy/k8s -------------------------------

_KUSTOMIZATION_FIELDS: Final = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "patches",
}
# Lists that a strategic merge patch merges by a key instead of replacing.
_MERGE_KEYS: Final = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
_WORKLOADS: Final = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def render(directory: Path) -> list[Obj]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"{directory}: the test's renderer lacks {sorted(unknown)}: extend it"
    objects: list[Obj] = []
    for entry in kust.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kust.get("patches", []):
        assert set(patch) <= {"path", "patch"}, f"{directory}: only untargeted patches: {patch}"
        text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
        for doc in yaml.safe_load_all(text):
            objects = _apply_patch(objects, doc)
    if "namespace" in kust:
        for obj in objects:
            obj["metadata"]["namespace"] = kust["namespace"]
    for labels in kust.get("labels", []):
        assert not labels.get("includeSelectors"), "selectors are written out in the manifests"
        for obj in objects:
            targets = [obj["metadata"]]
            if labels.get("includeTemplates") and obj["kind"] in _WORKLOADS:
                targets.append(obj["spec"]["template"].setdefault("metadata", {}))
                targets += [t["metadata"] for t in obj["spec"].get("volumeClaimTemplates", [])]
            for meta in targets:
                meta.setdefault("labels", {}).update(labels["pairs"])
    for image in kust.get("images", []):
        assert set(image) <= {"name", "newName", "newTag"}, image
        for container in _containers(objects):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")
    return objects


def _apply_patch(objects: list[Obj], patch: Obj) -> list[Obj]:
    ident = (patch["kind"], patch["metadata"]["name"])
    matches = [
        i for i, obj in enumerate(objects) if (obj["kind"], obj["metadata"]["name"]) == ident
    ]
    assert len(matches) == 1, f"patch {ident} matches {len(matches)} objects"
    if patch.get("$patch") == "delete":
        return [obj for i, obj in enumerate(objects) if i != matches[0]]
    objects[matches[0]] = _merge(objects[matches[0]], patch)
    return objects


def _merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        assert not any(k.startswith("$") for k in patch), f"unsupported directive in {patch}"
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(out[key], value, key) if key in out else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in _MERGE_KEYS:
        key = _MERGE_KEYS[field]
        merged = list(base)
        for item in patch:
            found = [i for i, old in enumerate(merged) if old[key] == item[key]]
            if found:
                merged[found[0]] = _merge(merged[found[0]], item)
            else:
                merged.append(item)
        return merged
    return patch


def _containers(objects: list[Obj]) -> Iterator[Obj]:
    for obj in objects:
        if obj["kind"] in _WORKLOADS:
            pod = obj["spec"]["template"]["spec"]
            yield from pod.get("initContainers", [])
            yield from pod["containers"]


def _normal(value: Any) -> Any:
    """Order-free form for comparison: kustomize may reorder merged lists such as env."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        if items and all(isinstance(v, dict) and "name" in v for v in items):
            items.sort(key=lambda v: str(v["name"]))
        return items
    return value


def _by_id(objects: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["kind"], o["metadata"]["name"]): _normal(o) for o in objects}


# --- Fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(OVERLAYS[request.param])


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def named(items: list[Obj], name: str) -> Obj:
    found = [item for item in items if item["name"] == name]
    assert len(found) == 1, f"expected one {name!r} in {[i['name'] for i in items]}"
    return found[0]


def gateway_container(objects: list[Obj]) -> Obj:
    pod = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    return named(pod["containers"], "gateway")


def config_text(objects: list[Obj]) -> str:
    text: str = one(objects, "ConfigMap", "gateway-config")["data"]["config.yaml"]
    return text


def pod_environ(objects: list[Obj]) -> dict[str, str]:
    """The gateway container's environment, with Secrets' values replaced by dummies."""
    pod = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    environ: dict[str, str] = {}
    if pod.get("enableServiceLinks", True):  # what the kubelet would add for each Service
        for svc in (o for o in objects if o["kind"] == "Service"):
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            environ[f"{prefix}_SERVICE_HOST"] = "10.0.0.1"
            environ[f"{prefix}_PORT"] = f"tcp://10.0.0.1:{svc['spec']['ports'][0]['port']}"
    for var in gateway_container(objects).get("env", []):
        if "value" in var:
            environ[var["name"]] = var["value"]
        elif var["name"] == "REDIS_URL":
            environ[var["name"]] = "rediss://default:secret@redis.example.com:6379/0"
        else:
            environ[var["name"]] = f"dummy-{var['name'].lower()}"
    return environ


def settings_of(objects: list[Obj]) -> Settings:
    return load(config_text(objects), pod_environ(objects))


def container_port(container: Obj, port: int | str) -> int:
    for spec in container["ports"]:
        if port in (spec["containerPort"], spec.get("name")):
            return int(spec["containerPort"])
    raise AssertionError(f"container {container['name']} has no port {port!r}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_seconds(container: Obj) -> float:
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    assert command[:1] == ["sleep"], f"preStop is not a sleep: {pre}"
    assert len(command) == 2, f"preStop is not a sleep: {pre}"
    return float(command[1])


# --- Rendering and schema validation -------------------------------------------------------


def test_renderer_matches_kustomize_when_installed(rendered: tuple[str, list[Obj]]) -> None:
    name, objects = rendered
    if tool := shutil.which("kustomize"):
        command = [tool, "build", str(OVERLAYS[name])]
    elif tool := shutil.which("kubectl"):
        command = [tool, "kustomize", str(OVERLAYS[name])]
    else:  # a fresh machine: the renderer's own output is checked by the tests below
        return
    out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    assert _by_id(objects) == _by_id([d for d in yaml.safe_load_all(out) if d])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(rendered: tuple[str, list[Obj]], version: str) -> None:
    _, objects = rendered
    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    assert not problems


def test_the_validator_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(one(render(OVERLAYS["base"]), "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_names_are_unique_and_labelled(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    ids = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids))
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/part-of",
        } <= set(labels), obj["metadata"]["name"]
        assert obj["metadata"]["namespace"] == "gateway"


# --- The gateway's config and the Deployment agree -----------------------------------------


def test_configmap_config_loads_with_the_pods_environment(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    settings = settings_of(objects)  # raises ConfigError listing every problem
    assert settings.server.host == "0.0.0.0"
    assert settings.store.url.startswith(("redis://", "rediss://")), "replicas need shared state"
    assert settings.keys
    assert settings.providers
    assert settings.models


def test_config_file_path_is_the_mounted_configmap(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    pod = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    container = gateway_container(objects)
    path = pod_environ(objects)["GATEWAY_CONFIG"]
    assert named(pod["volumes"], "config")["configMap"]["name"] == "gateway-config"
    mount = named(container["volumeMounts"], "config")
    assert mount["readOnly"] is True
    assert path == f"{mount['mountPath']}/config.yaml"


def test_container_port_is_the_config_port(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    assert container_port(gateway_container(objects), "http") == settings_of(objects).server.port


def test_service_links_cannot_clobber_gateway_port(rendered: tuple[str, list[Obj]]) -> None:
    """A Service named `gateway` would inject GATEWAY_PORT=tcp://..., which the gateway reads."""
    _, objects = rendered
    environ = pod_environ(objects)
    assert "GATEWAY_PORT" not in environ or environ["GATEWAY_PORT"].isdigit()


async def test_probes_answer_200_on_a_healthy_gateway(
    rendered: tuple[str, list[Obj]], aiohttp_client: AiohttpClient
) -> None:
    _, objects = rendered
    container = gateway_container(objects)
    environ = pod_environ(objects) | {"REDIS_URL": "memory://"}
    settings = load(config_text(objects), environ)
    client = await aiohttp_client(create_app(settings))
    probes = [container[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert {p["path"] for p in probes} == {"/healthz", "/readyz"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # reflects draining
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # never Redis
    for probe in probes:
        assert container_port(container, probe["port"]) == settings.server.port
        resp = await client.get(probe["path"])
        assert resp.status == 200, probe["path"]


def test_grace_period_covers_prestop_delay_and_drain(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    pod = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    server = settings_of(objects).server
    pause = prestop_seconds(gateway_container(objects))
    assert 0 < pause <= server.shutdown_delay_s
    assert (server.shutdown_delay_s, server.shutdown_grace_s) == (5, 25)
    # Margin for cancelling what outlived the grace and closing Redis and upstream pools.
    needed = pause + server.shutdown_delay_s + server.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] >= needed + 5


def test_selectors_pick_the_gateway_pods(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    deployment = one(objects, "Deployment", "gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the count"
    service = one(objects, "Service", "gateway")
    assert selects(service["spec"]["selector"], labels)
    assert service["spec"].get("sessionAffinity", "None") == "None"
    for port in service["spec"]["ports"]:
        container_port(gateway_container(objects), port["targetPort"])
    assert selects(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(
        one(objects, "NetworkPolicy", "gateway")["spec"]["podSelector"]["matchLabels"], labels
    )
    for spread in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert selects(spread["labelSelector"]["matchLabels"], labels)
    target = one(objects, "HorizontalPodAutoscaler", "gateway")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "gateway")


def test_workloads_run_locked_down(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    for obj in (o for o in objects if o["kind"] in _WORKLOADS):
        pod = obj["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            sec = container["securityContext"]
            assert sec["readOnlyRootFilesystem"] is True
            assert sec["allowPrivilegeEscalation"] is False
            assert sec["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]


def test_network_policy_lets_the_gateway_work(rendered: tuple[str, list[Obj]]) -> None:
    _, objects = rendered
    spec = one(objects, "NetworkPolicy", "gateway")["spec"]
    inbound = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert container_port(gateway_container(objects), "http") in inbound
    outbound = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert {53, 6379, 443} <= outbound


def test_base_bundles_redis_and_points_at_it() -> None:
    objects = render(OVERLAYS["base"])
    url = pod_environ(objects)["REDIS_URL"]
    host = re.match(r"redis://([^:/]+):6379/", url)
    assert host, url
    service = one(objects, "Service", host.group(1))
    redis = one(objects, "StatefulSet", host.group(1))
    assert redis["spec"]["replicas"] == 1
    assert selects(service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"])


def test_production_uses_an_external_redis_from_a_secret() -> None:
    objects = render(OVERLAYS["production"])
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert not [o for o in objects if o["metadata"]["name"] == "gateway-redis"]
    env = {v["name"]: v for v in gateway_container(objects)["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "gateway-redis", "key": "url"}
    assert "value" not in env["REDIS_URL"]
    base_hpa = one(render(OVERLAYS["base"]), "HorizontalPodAutoscaler")["spec"]
    assert one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] > base_hpa["minReplicas"]
    assert "registry" in gateway_container(objects)["image"]


# --- The image ----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_image_matches_the_deployment() -> None:
    steps = dockerfile()
    objects = render(OVERLAYS["base"])
    container = gateway_container(objects)
    pod = one(objects, "Deployment", "gateway")["spec"]["template"]["spec"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    args = {op: arg for op, arg in final}
    assert args["EXPOSE"] == str(container_port(container, "http"))
    assert args["USER"].split(":")[0] == str(pod["securityContext"]["runAsUser"])
    assert f"GATEWAY_CONFIG={pod_environ(objects)['GATEWAY_CONFIG']}" in args["ENV"]
    assert "/healthz" in args["HEALTHCHECK"]
    assert args["ENTRYPOINT"] == '["gateway", "serve"]'


def test_dockerignore_keeps_what_the_image_copies() -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    sources = [
        src
        for op, arg in dockerfile()
        if op == "COPY" and "--from=" not in arg
        for src in shlex.split(arg)[:-1]
    ]
    assert sources
    files = [
        str(p.relative_to(ROOT))
        for src in sources
        for p in ([ROOT / src] if (ROOT / src).is_file() else (ROOT / src).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "gateway/schema_files/config.schema.json" in files
    assert [f for f in files if dockerignored(f, patterns)] == []
    for kept_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py"):
        assert dockerignored(kept_out, patterns), kept_out
