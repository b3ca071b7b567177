"""Fidelity: the real ``kubectl`` drives a rollout, a failed rollout and a rollback against kubesim.

The binary is ``$KUBESIM_KUBECTL`` or ``kubectl`` on the PATH; without one the test is skipped, except under
CI=true where a missing kubectl is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim import KubeSim

from kubesim_support import wait_until

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 3
  progressDeadlineSeconds: 2
  selector:
    matchLabels:
      app: web
  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 8080
"""


def find_kubectl() -> str:
    """The kubectl to test with, or a skip (a failure under CI)."""
    found = os.environ.get("KUBESIM_KUBECTL") or shutil.which("kubectl")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl is required under CI (Debian package kubernetes-client)")
    pytest.skip("kubectl is not installed")


class Kubectl:
    """Runs kubectl against one emulator through a throwaway kubeconfig."""

    def __init__(self, binary: str, url: str, home: Path):
        self._binary = binary
        self._home = home
        self._config = home / "config"
        self._config.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: sim\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\n"
            "users:\n- name: tester\n  user:\n    token: any-token\n"
            "contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: tester\n    namespace: demo\n"
            "current-context: sim\n"
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS``; fails the test on a non-zero exit unless ``check`` is false."""
        command = [self._binary, "--kubeconfig", str(self._config), "--cache-dir", str(self._home / "cache"), *args]
        env = {**os.environ, "HOME": str(self._home)}
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        """``kubectl ARGS -o json``, decoded."""
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    """kubectl pointed at a fresh emulator that cannot pull ``nginx:bad*``."""
    binary = find_kubectl()
    with KubeSim(ready_delay=0.05, unpullable=["nginx:bad*"]) as sim:
        yield Kubectl(binary, sim.url, tmp_path)


def image_of(kubectl: Kubectl) -> str:
    return str(kubectl.json("get", "deployment", "web")["spec"]["template"]["spec"]["containers"][0]["image"])


def test_kubectl_rollout_lifecycle(kubectl: Kubectl, tmp_path: Path) -> None:
    # Given the manifests applied with kubectl and the first rollout waited for
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST)
    applied = kubectl.run("apply", "-f", str(manifest))
    first = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")

    # When the image is changed and the rollout waited for
    kubectl.run("set", "image", "deployment/web", "web=nginx:1.26")
    second = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    history = kubectl.run("rollout", "history", "deployment/web")

    # Then kubectl created everything, saw both rollouts succeed and lists two revisions
    assert "deployment.apps/web created" in applied.stdout
    assert 'deployment "web" successfully rolled out' in first.stdout
    assert 'deployment "web" successfully rolled out' in second.stdout
    revisions = [line.split()[0] for line in history.stdout.splitlines()[2:] if line.strip()]
    assert revisions == ["1", "2"]

    # When the rollout is undone
    kubectl.run("rollout", "undo", "deployment/web")
    undone = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")
    after_undo = kubectl.run("rollout", "history", "deployment/web")

    # Then the deployment is back on the previous image under a new revision number
    assert 'deployment "web" successfully rolled out' in undone.stdout
    assert image_of(kubectl) == "nginx:1.25"
    revisions = [line.split()[0] for line in after_undo.stdout.splitlines()[2:] if line.strip()]
    assert revisions == ["2", "3"]

    # When everything is listed as JSON
    listing = kubectl.json("get", "deploy,rs,pods")

    # Then the objects are the ones a cluster would show
    kinds = [item["kind"] for item in listing["items"]]
    assert kinds.count("Deployment") == 1
    assert kinds.count("ReplicaSet") == 2
    assert kinds.count("Pod") == 3
    deployment = next(item for item in listing["items"] if item["kind"] == "Deployment")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    # When the manifest is applied again unchanged
    reapplied = kubectl.run("apply", "-f", str(manifest))

    # Then kubectl sees nothing to change in the namespace and service
    assert "service/app unchanged" in reapplied.stdout


def test_kubectl_rollout_status_fails_on_the_progress_deadline(kubectl: Kubectl, tmp_path: Path) -> None:
    # Given a rolled-out deployment
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST)
    kubectl.run("apply", "-f", str(manifest))
    kubectl.run("rollout", "status", "deployment/web", "--timeout=60s")

    # When it moves to an image the cluster cannot pull and the rollout is waited for
    kubectl.run("set", "image", "deployment/web", "web=nginx:bad-1")
    failed = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s", check=False)

    # Then kubectl reports the exceeded deadline and exits non-zero
    assert failed.returncode != 0
    assert 'deployment "web" exceeded its progress deadline' in failed.stderr

    # And a rollback through kubectl recovers it
    kubectl.run("rollout", "undo", "deployment/web")
    wait_until(lambda: image_of(kubectl) == "nginx:1.25", what="the rollback")
    recovered = kubectl.run("rollout", "status", "deployment/web", "--timeout=60s", check=False)
    assert 'deployment "web" successfully rolled out' in recovered.stdout


def test_kubectl_set_image_counts_the_generation_up(kubectl: Kubectl, tmp_path: Path) -> None:
    # Given the deployment applied with kubectl and scaled twice, at generation 3
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST)
    kubectl.run("apply", "-f", str(manifest))
    for replicas in ("4", "5"):
        kubectl.run("scale", "deployment/web", f"--replicas={replicas}")
    before = kubectl.json("get", "deployment", "web")["metadata"]["generation"]

    # When kubectl changes the image (a strategic merge patch) and then a label (metadata only)
    set_image = kubectl.json("set", "image", "deployment/web", "web=nginx:1.26")
    kubectl.run("label", "deployment/web", "team=a")
    after = kubectl.json("get", "deployment", "web")

    # Then the image change counted one more generation, the label none, and none went back
    assert before == 3
    assert set_image["metadata"]["generation"] == 4
    assert after["metadata"]["generation"] == 4
