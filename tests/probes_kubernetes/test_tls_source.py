"""The ``tls`` probe's ``kubernetes_secret`` source, reading through our client and fake API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trustme

from probes import tls
from probes.base import ProbeResult
from tests.probes_kubernetes import objects as o
from tests.probes_kubernetes.fake_api import FakeKube
from tests.runs import run_once


def sample(result: ProbeResult, metric_name: str, **labels: str) -> float | None:
    for metric in result.metrics:
        if metric.name == metric_name:
            for s in metric.samples:
                if all(dict(s.labels).get(k) == v for k, v in labels.items()):
                    return s.value
    return None


async def run_tls(config_data: dict[str, object]) -> ProbeResult:
    return await run_once(tls.KIND, tls.KIND.config_model.model_validate(config_data))


@pytest.mark.anyio
async def test_tls_probe_reads_kubernetes_secret(fake_kube: FakeKube, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("api.festivals.app")
    fake_kube.secrets[(o.NS, "festivals-tls")] = o.tls_secret(
        "festivals-tls", leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    )
    secret = {"namespace": o.NS, "name": "festivals-tls", "kubeconfig": str(fake_kube.kubeconfig)}
    secret["server_name"] = "api.festivals.app"
    result = await run_tls({"kubernetes_secret": secret, "ca_file": str(ca_file)})
    assert result.success, result.detail
    assert sample(result, "tls_verify_success") == 1.0
    expiry = sample(result, "tls_cert_not_after_timestamp_seconds")
    assert expiry is not None and expiry > time.time() + 86400
    assert fake_kube.paths("/api/v1/namespaces/festivals/secrets/festivals-tls")
    assert "fake-token" not in repr(result)


@pytest.mark.anyio
async def test_tls_probe_secret_forbidden(fake_kube: FakeKube) -> None:
    fake_kube.forbidden.add("secrets")
    secret = {"namespace": o.NS, "name": "festivals-tls", "kubeconfig": str(fake_kube.kubeconfig)}
    result = await run_tls({"kubernetes_secret": secret})
    assert not result.success
    assert result.reason == "forbidden", (result.reason, result.detail)
