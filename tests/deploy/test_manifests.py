"""deploy/kubernetes renders, validates against the schemas, and keeps its invariants."""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter import cli
from exporter.config import SECRET_VAR_RE, parse_config
from exporter.results import ResultStore
from tests.deploy.kustomize import KUSTOMIZE_DIR, Obj, kubectl, kubectl_render, python_render
from tests.deploy.kustomize import render as _render

KUBERNETES_VERSION = "1.32"  # the oldest minor the manifests promise to work on
SCHEMAS = yaml.safe_load(
    (Path(__file__).with_name("schemas") / "monitoring.coreos.com-v1.yaml").read_text()
)
LAYERS = ["base", "overlays/example"]
MIXIN = KUSTOMIZE_DIR / "base" / "mixin"


@cache
def rendered(layer: str) -> tuple[Obj, ...]:
    objects, how = _render(KUSTOMIZE_DIR / layer)
    print(f"{layer}: rendered with {how}")
    return tuple(objects)


def one(objects: tuple[Obj, ...], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def test_the_fallback_renderer_agrees_with_kubectl() -> None:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: the tests use the Python fallback renderer")
    for layer in LAYERS:
        def key(o: Obj) -> tuple[str, str]:
            return o["kind"], o["metadata"]["name"]
        ours = sorted(python_render(KUSTOMIZE_DIR / layer), key=key)
        theirs = sorted(kubectl_render(KUSTOMIZE_DIR / layer), key=key)
        assert ours == theirs, layer


@pytest.mark.parametrize("layer", LAYERS)
def test_every_object_validates_against_its_schema(layer: str) -> None:
    objects = rendered(layer)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ServiceMonitor", "NetworkPolicy", "ConfigMap",
            "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            schema = {**SCHEMAS[obj["kind"]], "$defs": SCHEMAS["$defs"]}
            errors = list(jsonschema.Draft202012Validator(schema).iter_errors(obj))
            assert not errors, f"{name}: {[e.message for e in errors]}"
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                raise AssertionError(f"{name}: {path}: {exc.message}") from None


def test_an_inline_secret_is_caught() -> None:
    with pytest.raises(AssertionError, match="password holds a value"):
        _no_inline_secrets({"probes": [{"name": "db", "password": "hunter2"}]}, "config")
    _no_inline_secrets({"probes": [{"password": "${PG_PASSWORD}", "tls_secrets": ["a"]}]}, "c")


def test_the_schemas_catch_mistakes() -> None:
    """The validation above can fail: a misspelt key and a wrong type are caught."""
    deployment = dict(one(rendered("base"), "Deployment"))
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    monitor = one(rendered("base"), "ServiceMonitor")
    endpoint = {**monitor["spec"]["endpoints"][0], "honorLabel": True}
    bad = {**monitor, "spec": {**monitor["spec"], "endpoints": [endpoint]}}
    schema = {**SCHEMAS["ServiceMonitor"], "$defs": SCHEMAS["$defs"]}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "x"},
            "spec": {"groups": [{"name": "g", "rules": [{"record": "a:b", "for": "5m",
                                                          "expr": "1"}]}]}}
    schema = {**SCHEMAS["PrometheusRule"], "$defs": SCHEMAS["$defs"]}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(rule))


def _pod(objects: tuple[Obj, ...]) -> Obj:
    spec: Obj = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(objects: tuple[Obj, ...]) -> Obj:
    containers = _pod(objects)["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def _quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


@pytest.mark.parametrize("layer", LAYERS)
def test_pods_run_unprivileged_with_limits(layer: str) -> None:
    objects = rendered(layer)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = _pod(objects)
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert anti[0]["labelSelector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod and "hostPID" not in pod
    for container in pod["containers"] + pod.get("initContainers", []):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"]
        assert not ctx.get("privileged", False)
        assert ctx.get("runAsUser", security["runAsUser"]) > 0
        for resource in ("cpu", "memory"):
            request = _quantity(container["resources"]["requests"][resource])
            limit = _quantity(container["resources"]["limits"][resource])
            assert 0 < request <= limit, (resource, request, limit)
        assert not re.search(r":latest$|^[^:]*$", container["image"]), container["image"]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def _flags(objects: tuple[Obj, ...]) -> Any:
    container = _container(objects)
    assert container.get("command") is None  # the image's entrypoint: the console script
    # The exporter's own parser accepts the arguments: no flag is misspelt or unknown.
    args, unknown = cli._parser().parse_known_args(container["args"])
    assert not unknown, f"flags the exporter does not accept: {unknown}"
    return args


def _port_of(listen_address: str) -> int:
    return int(listen_address.rpartition(":")[2])


@pytest.mark.parametrize("layer", LAYERS)
def test_probes_and_ports_agree_with_the_exporters_flags(layer: str) -> None:
    objects = rendered(layer)
    args = _flags(objects)
    assert args.command == "run"
    container = _container(objects)
    (port,) = container["ports"]
    assert port["containerPort"] == _port_of(args.listen_address)
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready"),
                        ("startupProbe", "/-/healthy")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert _status(path) == 200, path  # the exporter serves it
        assert get["port"] in (port["name"], port["containerPort"])
    service = one(objects, "Service")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"] and endpoint["path"] == "/metrics"
    # The kubernetes probe's namespace/pod/container labels survive the scrape.
    assert endpoint["honorLabels"] is True
    # Replicas differ only by instance, which the mixin's quorum rules aggregate away: the
    # per-replica pod/container target labels are dropped and no relabeling adds another.
    dropped = [r["regex"] for r in endpoint["relabelings"] if r["action"] == "labeldrop"]
    assert any(re.fullmatch(d, "pod") for d in dropped)
    assert any(re.fullmatch(d, "container") for d in dropped)
    assert not [r for r in endpoint["relabelings"] if "targetLabel" in r]
    # The web config decides the scheme: the kubelet and Prometheus must use the same.
    assert {container[p]["httpGet"]["scheme"] for p in ("livenessProbe", "readinessProbe")} \
        == {endpoint["scheme"].upper()}
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (ingress,) = policy["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [port["containerPort"]]


def _status(path: str) -> int:
    """GET ``path`` from the exporter's web app on an empty, loaded config."""
    from exporter.web import create_app

    class Controller:
        config = parse_config("probes: []\n")
        store = ResultStore()

    Controller.store.apply_config(Controller.config)
    transport = httpx.ASGITransport(app=create_app(Controller()))  # type: ignore[arg-type]

    async def get() -> int:
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return (await client.get(path)).status_code

    return anyio.run(get)


def _mounted_file(objects: tuple[Obj, ...], path: str) -> tuple[Obj, str]:
    """The volume a file path of the container lives in, and the key inside it."""
    container = _container(objects)
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in _pod(objects)["volumes"] if v["name"] == mount["name"])
            return volume, path.removeprefix(prefix)
    raise AssertionError(f"{path} is on no mounted volume")


@pytest.mark.parametrize("layer", LAYERS)
def test_the_config_map_is_the_config_and_its_hash_rolls_the_pods(layer: str) -> None:
    objects = rendered(layer)
    args = _flags(objects)
    volume, key = _mounted_file(objects, args.config_file)
    maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    name = volume["configMap"]["name"]
    # The generator's content hash is in the name: a new config is a new pod template.
    assert re.fullmatch(r"festivals-exporter-config-[a-z0-9]{10}", name), name
    text = maps[name]["data"][key]
    env = {e["name"] for e in _container(objects).get("env", [])}
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert used <= env, f"the config uses variables the Deployment does not set: {used - env}"
    config = parse_config(text, {name: "x" for name in env}, source=f"{layer} ConfigMap")
    assert len(config.probes) >= 5
    if getattr(args, "web_config_file", None):
        volume, key = _mounted_file(objects, args.web_config_file)
        assert "secret" in volume and key, "the web config holds password hashes: a Secret"


@pytest.mark.parametrize("layer", LAYERS)
def test_no_secret_values_only_references(layer: str) -> None:
    objects = rendered(layer)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for env in _container(objects).get("env", []):
        if SECRET_VAR_RE.search(env["name"]):
            assert "value" not in env and "secretKeyRef" in env["valueFrom"], env
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            for text in obj["data"].values():
                _no_inline_secrets(yaml.safe_load(text), obj["metadata"]["name"])
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    for ref in endpoint.get("basicAuth", {}).values():
        assert set(ref) == {"name", "key"}, ref


_SECRET_KEY = re.compile(r"^(password|token|bearer_token|dsn|\w+_password|\w+_token)$")


def _no_inline_secrets(node: Any, where: str) -> None:
    """Every secret-valued key of the config holds a ${VAR} reference, never a value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _SECRET_KEY.match(str(key)) and value is not None:
                assert isinstance(value, str) and re.fullmatch(r"\$\{\w+\}", value), (
                    f"{where}: {key} holds a value, not a ${{VAR}} reference"
                )
            _no_inline_secrets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            _no_inline_secrets(item, where)


@pytest.mark.parametrize("layer", LAYERS)
def test_rbac_binds_the_pods_service_account(layer: str) -> None:
    objects = rendered(layer)
    account = one(objects, "ServiceAccount")["metadata"]
    assert _pod(objects)["serviceAccountName"] == account["name"]
    subject = one(objects, "RoleBinding")["subjects"][0]
    assert (subject["name"], subject["namespace"]) == (account["name"], account["namespace"])


@pytest.mark.parametrize("layer", LAYERS)
def test_network_policy_opens_only_what_the_probes_need(layer: str) -> None:
    policy = one(rendered(layer), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert all("namespaceSelector" in peer or "podSelector" in peer for peer in ingress["from"])
    for rule in policy["spec"]["egress"]:
        ports = {(p["port"], p["protocol"]) for p in rule["ports"]}
        if "to" not in rule:  # anywhere: only HTTPS (API server, ingress, vendors)
            assert ports <= {(443, "TCP"), (6443, "TCP")}, rule


def test_the_mixin_objects_are_part_of_the_base() -> None:
    if not MIXIN.is_dir():
        pytest.skip("deploy/kubernetes/base/mixin/ is not generated yet")
    base = yaml.safe_load((KUSTOMIZE_DIR / "base" / "kustomization.yaml").read_text())
    assert "mixin" in base["resources"]
    objects = rendered("base")
    assert [o for o in objects if o["kind"] == "PrometheusRule"]
    dashboards = [o for o in objects if o["kind"] == "ConfigMap"
                  and "grafana_dashboard" in o["metadata"].get("labels", {})]
    assert dashboards


def test_the_documented_commands_name_real_paths() -> None:
    doc = (KUSTOMIZE_DIR.parents[1] / "docs" / "deployment.md").read_text()
    doc = doc.replace("\\\n", " ")  # shell line continuations
    named = [word for command in re.findall(r"^(kubectl .*)$", doc, re.M)
             for word in shlex.split(command, comments=True) if word.startswith("deploy/")]
    assert "deploy/kubernetes/overlays/example" in named
    for word in named:
        assert (KUSTOMIZE_DIR.parents[1] / word).exists(), word
