"""The Kubernetes manifests render with kustomize and pass the strict offline validator, and the
validator really refuses what it promises to (deploy/k8s/check.sh, deploy/k8s/validate/).

The first run builds kustomize and the validator from the Go module proxy into .cache/ (a few
minutes on two cores); later runs reuse them and need no network.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "deploy/k8s/check.sh"
SERVICES = ["checkout", "inventory", "receipts", "projection", "orchestrator", "simulator"]

# a cold build compiles kustomize and k8s.io/api
pytestmark = pytest.mark.timeout(1200)

Manifest = list[dict[str, Any]]


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CHECK), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1100,
        check=False,
    )


@pytest.fixture(scope="module")
def check_run() -> subprocess.CompletedProcess[str]:
    return _check()


@pytest.fixture(scope="module")
def validator(check_run: subprocess.CompletedProcess[str]) -> Path:
    tools = _check("tools")
    assert tools.returncode == 0, tools.stderr
    return Path(tools.stdout.strip())


@pytest.fixture(scope="module")
def local_manifest(validator: Path) -> str:
    rendered = _check("render", "overlays/local")
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


def _validate(validator: Path, manifest: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(validator)], input=manifest, capture_output=True, text=True, timeout=60, check=False
    )


def _edit(manifest: str, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> str:
    docs: Manifest = list(yaml.safe_load_all(manifest))
    target = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(target) == 1, f"{kind} {name} not rendered"
    change(target[0])
    return yaml.safe_dump_all(docs, sort_keys=False)


def test_base_and_every_overlay_render_and_validate(
    check_run: subprocess.CompletedProcess[str],
) -> None:
    assert check_run.returncode == 0, check_run.stdout + check_run.stderr
    assert "[k8s] base ok" in check_run.stderr
    assert "[k8s] overlays/local ok" in check_run.stderr


def test_local_overlay_runs_every_service_probed_on_its_health_port(local_manifest: str) -> None:
    docs: Manifest = list(yaml.safe_load_all(local_manifest))
    workloads = {
        d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
    }
    assert sorted(workloads) == sorted(SERVICES)
    assert workloads["orchestrator"]["kind"] == "StatefulSet"
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert budgets == set(SERVICES)
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Job"} == {
        "topics",
        "postgres-init",
    }


def test_the_unmodified_local_manifest_passes(validator: Path, local_manifest: str) -> None:
    result = _validate(validator, local_manifest)
    assert result.returncode == 0, result.stderr


def test_an_unknown_field_is_refused(validator: Path, local_manifest: str) -> None:
    def misspell_replicas(deployment: dict[str, Any]) -> None:
        deployment["spec"]["replicass"] = deployment["spec"].pop("replicas")

    result = _validate(
        validator, _edit(local_manifest, "Deployment", "checkout", misspell_replicas)
    )

    assert result.returncode == 1
    assert 'Deployment leadline/checkout: unknown field "spec.replicass"' in result.stderr


def test_a_container_without_probes_is_refused(validator: Path, local_manifest: str) -> None:
    def drop_probes(deployment: dict[str, Any]) -> None:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        del container["livenessProbe"], container["readinessProbe"]

    result = _validate(validator, _edit(local_manifest, "Deployment", "inventory", drop_probes))

    assert result.returncode == 1
    where = "Deployment leadline/inventory: container inventory"
    assert f"{where}: no livenessProbe: it must be an httpGet on /health/live" in result.stderr
    assert f"{where}: no readinessProbe: it must be an httpGet on /health/ready" in result.stderr


@pytest.mark.parametrize(
    ("kind", "name", "change", "complaint"),
    [
        pytest.param(
            "StatefulSet",
            "orchestrator",
            lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("resources"),
            "container orchestrator: resources.limits.memory is required",
            id="no-resources",
        ),
        pytest.param(
            "Deployment",
            "receipts",
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="leadline"),
            'image "leadline" has no tag, which means :latest',
            id="untagged-image",
        ),
        pytest.param(
            "Deployment",
            "projection",
            lambda o: o["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"),
            "container projection: runAsNonRoot must be true",
            id="may-run-as-root",
        ),
        pytest.param(
            "PodDisruptionBudget",
            "receipts",
            lambda o: o["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "x"}),
            "Deployment leadline/receipts: no PodDisruptionBudget selects its pods",
            id="consumer-without-budget",
        ),
        pytest.param(
            "Deployment",
            "checkout",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "X", "value": "$(POSTGRES_HOSTNAME)"}
            ),
            "env X: $(POSTGRES_HOSTNAME) is defined by no variable before it",
            id="dangling-variable",
        ),
        pytest.param(
            "Deployment",
            "checkout",
            lambda o: o.update(apiVersion="apps/v1beta1"),
            "unknown kind or apiVersion",
            id="unknown-api-version",
        ),
    ],
)
def test_policy_violations_are_refused(
    validator: Path,
    local_manifest: str,
    kind: str,
    name: str,
    change: Callable[[dict[str, Any]], None],
    complaint: str,
) -> None:
    result = _validate(validator, _edit(local_manifest, kind, name, change))

    assert result.returncode == 1
    assert complaint in result.stderr
