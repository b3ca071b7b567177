"""A K8S task's YAML read from Git (Code Stream's `filepath` and `scmConstants`): the file is fetched by Debian's
git from a real repository served by `git daemon` on a free local port, its `{{NAME}}` placeholders filled in, and
applied to kubesim by a real worker. What it must never do: follow a path or a link out of the repository, let a
constant change the YAML's structure, or take a URL that would run a command or read the worker's files.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client as k8s

from api.cli import cli
from kubesim import KubeSim
from orchestrator import gitsource
from orchestrator.endpoints import Endpoint
from workers.probe import EndpointProber

from rollway_testing import TOKEN, ServedApp, ended, task_of, wait_until

Doc = dict[str, Any]
PROJECT = "migration"
CORPUS = Path(__file__).parent / "codestream"
WEB_YAML = """\
apiVersion: v1
kind: Namespace
metadata:
  name: git-shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: git-shop
  annotations: {team: {{ team }}}
spec:
  replicas: {{replicas}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:{{tag}}"}]
"""


DAEMON = ("git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1")


@dataclass
class GitServer:
    """A bare repository served read-only by `git daemon` over git:// on 127.0.0.1."""

    url: str
    head: str


def git(*arguments: str, cwd: Path) -> str:
    done = subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[GitServer]:
    """deploy/web.yaml (with placeholders) and links out of the repository (a file's and a directory's), pushed to
    a bare repository that `git daemon` serves."""
    served = tmp_path / "served"
    bare = served / "web.git"
    work = tmp_path / "work"
    served.mkdir()
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(work)], check=True)
    (work / "deploy").mkdir()
    (work / "deploy" / "web.yaml").write_text(WEB_YAML, encoding="utf-8")
    (work / "deploy" / "secrets.yaml").symlink_to("/etc/passwd")
    (work / "system").symlink_to("/etc")
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "web", cwd=work)
    git("push", "--quiet", str(bare), "main", cwd=work)
    port = free_port()
    daemon = subprocess.Popen(
        [*DAEMON, f"--port={port}", f"--base-path={served}", str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), timeout=15, what="git daemon to listen")
        yield GitServer(f"git://127.0.0.1:{port}/web.git", git("rev-parse", "HEAD", cwd=work))
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        time.sleep(0.05)
        return False


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim(ready_delay=0.1) as sim:
        yield sim


def endpoints(api: ServedApp, cluster: KubeSim, repository: GitServer) -> None:
    api.create_at("/api/endpoints", {"name": "dev-cluster", "project": PROJECT, "url": cluster.url, "insecure": True})
    api.create_at("/api/endpoints", {"name": "web-repo", "project": PROJECT, "type": "git", "url": repository.url})


def release(api: ServedApp, filepath: str, constants: Doc) -> Doc:
    """Stage Dev: APPLY the file `filepath` of web-repo with `constants`; its rollback is `Undo`."""
    note = {"Note": {"type": "Condition", "input": {"condition": "1 == 1"}}}
    api.create(
        {"name": "Undo", "project": PROJECT, "enabled": True, "stageOrder": ["Undo"]}
        | {"stages": {"Undo": {"taskOrder": ["Note"], "tasks": note}}}
    )
    apply = {
        "type": "K8S",
        "endpoints": {"kubernetesServer": "dev-cluster", "scm": "web-repo"},
        "input": {"action": "APPLY", "filepath": filepath, "scmConstants": constants},
    }
    stage = {"taskOrder": ["Apply"], "tasks": {"Apply": apply}, "rollback": {"pipeline": "Undo"}}
    return api.create(
        {"name": "Release", "project": PROJECT, "enabled": True, "stageOrder": ["Dev"], "stages": {"Dev": stage}}
        | {"input": {"file": ""}}
    )


def run(api: ServedApp, pipeline: Doc) -> Doc:
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={})
    assert answer.status_code == 202, answer.text
    return ended(api, answer.json()["executionId"])


def test_an_imported_export_reads_its_yaml_from_git_with_its_constants_and_runs_on_kubesim(
    api: ServedApp, cluster: KubeSim, repository: GitServer, worker: Any
) -> None:
    # Given the export imported before its git endpoint exists: saved disabled, one warning naming it
    api.create_at("/api/endpoints", {"name": "dev-cluster", "project": PROJECT, "url": cluster.url, "insecure": True})
    invoke = ["--url", api.url, "import", "codestream", str(CORPUS / "k8s-from-git.yaml")]
    imported = CliRunner().invoke(cli, invoke, env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None})
    assert "saved disabled with 1 warning" in imported.output, imported.output
    [found] = api.http.get("/api/pipelines", params={"name": "Web From Git"}).json()
    assert [warning["path"] for warning in found["_warnings"]] == ["stages.Dev.tasks.Apply From Repo.endpoints.scm"]

    # When the git endpoint is made, the pipeline enabled and run
    api.create_at("/api/endpoints", {"name": "web-repo", "project": PROJECT, "type": "git", "url": repository.url})
    enabled = api.http.patch(f"/api/pipelines/{found['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    done = run(api, found)

    # Then it completes, the cluster has what the file says with the constants filled in, and the output says
    # which commit of which file it was
    assert done["status"] == "COMPLETED", done["statusMessage"]
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    deployment = apps.read_namespaced_deployment("web", "git-shop")
    assert deployment.spec.replicas == 2
    assert deployment.spec.template.spec.containers[0].image == "nginx:1.27"
    assert deployment.metadata.annotations["team"] == "web team"
    source = task_of(done, "Dev", "Apply From Repo")["output"]["source"]
    assert source == {"repository": repository.url, "branch": "main", "path": "deploy/web.yaml"} | {
        "commit": repository.head
    }


def test_a_file_missing_from_the_repository_fails_the_task_naming_it_and_the_rollback_runs(
    api: ServedApp, cluster: KubeSim, repository: GitServer, worker: Any
) -> None:
    endpoints(api, cluster, repository)
    done = run(api, release(api, "deploy/missing.yaml", {}))
    assert done["status"] == "ROLLBACK_COMPLETED"
    message = task_of(done, "Dev", "Apply")["statusMessage"]
    assert "deploy/missing.yaml on branch main of " + repository.url in message and "no such file" in message


@pytest.mark.parametrize(
    ("filepath", "said"),
    [("deploy/secrets.yaml", "it is a link, not a file"), ("system/passwd", "there is no such file")],
    ids=["file-link", "through-directory-link"],
)
def test_a_link_in_the_repository_is_not_followed(
    api: ServedApp, cluster: KubeSim, repository: GitServer, worker: Any, filepath: str, said: str
) -> None:
    endpoints(api, cluster, repository)
    done = run(api, release(api, filepath, {}))
    assert done["status"] == "ROLLBACK_COMPLETED"
    message = task_of(done, "Dev", "Apply")["statusMessage"]
    assert said in message, message
    assert "root:" not in str(done)


def test_a_filepath_bound_at_run_time_to_a_path_out_of_the_repository_fails_and_rolls_back(
    api: ServedApp, cluster: KubeSim, repository: GitServer, worker: Any
) -> None:
    # Given a release whose filepath is an input (only known at run time, so not checked when saved)
    endpoints(api, cluster, repository)
    pipeline = release(api, "${input.file}", {})
    # When it runs with a path that climbs out of the repository
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": {"file": "../web.git/config"}})
    assert answer.status_code == 202, answer.text
    done = ended(api, answer.json()["executionId"])
    # Then the task fails naming the path, nothing is read, and the stage's rollback runs
    assert done["status"] == "ROLLBACK_COMPLETED"
    message = task_of(done, "Dev", "Apply")["statusMessage"]
    assert "filepath must stay inside the repository" in message and "../web.git/config" in message, message
    assert "repositoryformatversion" not in str(done)


def test_a_constant_that_would_add_a_field_stays_a_value(
    api: ServedApp, cluster: KubeSim, repository: GitServer, worker: Any
) -> None:
    # Given a team constant that tries to close its annotations' mapping and add `paused: true` beside it
    endpoints(api, cluster, repository)
    hostile = {"replicas": 1, "tag": "1.27", "team": "web}, paused: true, x: {y: z"}
    done = run(api, release(api, "deploy/web.yaml", hostile))
    # Then the annotation is that text, whole, and the Deployment has no field it did not have
    assert done["status"] == "COMPLETED", done["statusMessage"]
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    deployment = apps.read_namespaced_deployment("web", "git-shop")
    assert deployment.metadata.annotations["team"] == "web}, paused: true, x: {y: z"
    assert "x" not in deployment.metadata.annotations
    assert not deployment.spec.paused


@pytest.mark.parametrize(
    "value",
    [
        "2\n  paused: true",
        "1\n  replicas: 99",
        'x"\n  paused: true',
        "{{replicas}}",
        "}}",
        "1}}\n  paused: true\n  x: {{",
        "- a\n- b",
        "!!python/object:os.system",
        "*anchor",
    ],
    ids=["newline", "replicas-again", "quote", "placeholder", "braces", "braces-newline", "list", "tag", "alias"],
)
def test_no_constant_changes_the_structure_of_the_yaml(value: str) -> None:
    filled = gitsource.substitute(WEB_YAML, {"replicas": value, "tag": "1", "team": "t"}, "deploy/web.yaml")
    _namespace, deployment = yaml.safe_load_all(filled)
    assert deployment["spec"]["replicas"] == value
    assert set(deployment["spec"]) == {"replicas", "selector", "template"}


def test_a_constant_inside_longer_text_is_spliced_into_that_string_as_it_is() -> None:
    # Given constants for the image tag (inside a quoted string) and the team, one trying to end the quotes
    constants = {"replicas": 3, "tag": '1.27"\n      replicas: 99', "team": "web team"}
    # When the file is filled
    _namespace, deployment = yaml.safe_load_all(gitsource.substitute(WEB_YAML, constants, "deploy/web.yaml"))
    # Then the whole-value constant has YAML's type, and the tag is part of the image's text, quotes and all
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": 'nginx:1.27"\n      replicas: 99'}
    ]
    assert deployment["metadata"]["annotations"] == {"team": "web team"}


def test_a_constant_in_a_block_of_text_lands_in_it_without_quotes() -> None:
    template = "kind: ConfigMap\ndata:\n  run.sh: |\n    echo {{greeting}} from {{ team }}\n"
    filled = yaml.safe_load(gitsource.substitute(template, {"greeting": "hello world", "team": True}, "cm.yaml"))
    assert filled["data"] == {"run.sh": "echo hello world from true\n"}


def test_a_file_of_aliases_standing_for_millions_of_values_is_refused() -> None:
    # Given a few hundred bytes of YAML whose aliases stand for ten million values
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 7)]
    # When it is filled, Then it is refused before anything walks it
    with pytest.raises(ValueError, match="holds more than 1000000 values"):
        gitsource.substitute("\n".join(lines), {}, "deploy/bomb.yaml")


def test_a_placeholder_without_its_constant_is_named() -> None:
    with pytest.raises(ValueError, match=r"uses \{\{team\}\}, which scmConstants does not give"):
        gitsource.substitute(WEB_YAML, {"replicas": 1, "tag": "1"}, "deploy/web.yaml")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ext::sh -c touch% /tmp/pwned"}, "url"),
        ({"url": "file:///etc"}, "url"),
        ({"url": "ssh://git@example.com/repo.git"}, "url"),
        ({"url": "https://user:pw@example.com/repo.git"}, "url"),
        ({"url": "-uhttps://example.com/repo.git"}, "url"),
        ({"url": "https://example.com/repo.git", "branch": "--upload-pack=touch /tmp/pwned"}, "branch"),
        ({"url": "https://example.com/repo.git", "branch": "main..x"}, "branch"),
        ({"url": "https://example.com/repo.git", "knownHosts": "x"}, "knownHosts"),
    ],
    ids=["ext", "file", "ssh", "userinfo", "option", "branch-option", "branch-dots", "foreign-field"],
)
def test_a_git_endpoint_that_could_run_a_command_or_read_files_is_refused_naming_the_field(
    api: ServedApp, body: Doc, field: str
) -> None:
    answer = api.http.post("/api/endpoints", json={"name": "repo", "project": PROJECT, "type": "git"} | body)
    assert answer.status_code == 400, answer.text
    assert field in [problem["path"] for problem in answer.json()["error"]["details"]]
    assert api.http.get("/api/endpoints").json() == []


def test_a_git_endpoint_cannot_be_changed_to_a_url_that_runs_a_command(api: ServedApp) -> None:
    # Given a git endpoint
    created = api.create_at(
        "/api/endpoints", {"name": "repo", "project": PROJECT, "type": "git", "url": "https://git.example.com/w.git"}
    )
    # When its URL is changed to git's ext:: transport, Then the change is refused naming the field
    answer = api.http.patch(f"/api/endpoints/{created['id']}", json={"url": "ext::sh -c touch% /tmp/pwned"})
    assert answer.status_code == 400, answer.text
    assert [problem["path"] for problem in answer.json()["error"]["details"]] == ["url"]
    # ... and the endpoint keeps its URL
    assert api.http.get(f"/api/endpoints/{created['id']}").json()["url"] == "https://git.example.com/w.git"


def test_a_git_endpoint_shows_its_branch_and_whether_it_logs_in_never_the_password(api: ServedApp) -> None:
    created = api.create_at(
        "/api/endpoints",
        {"name": "repo", "project": PROJECT, "type": "git", "url": "https://git.example.com/web.git"}
        | {"branch": "release/2.7", "username": "ci", "password": "glpat-secret-token"},
    )
    assert created["branch"] == "release/2.7" and created["username"] == "ci" and created["hasPassword"] is True
    assert "glpat-secret-token" not in str(api.http.get(f"/api/endpoints/{created['id']}").json())


@pytest.mark.parametrize(
    ("task_input", "endpoints_of", "path"),
    [
        ({"filepath": "../outside.yaml"}, {"scm": "web-repo"}, "input.filepath"),
        ({"filepath": "/etc/passwd"}, {"scm": "web-repo"}, "input.filepath"),
        ({"filepath": ".git/config"}, {"scm": "web-repo"}, "input.filepath"),
        ({"filepath": "deploy/web.yaml"}, {}, "endpoints.scm"),
        ({"filepath": "deploy/web.yaml", "yaml": "kind: Namespace"}, {"scm": "web-repo"}, "input.yaml"),
        ({"filepath": "deploy/web.yaml", "scmConstants": {"bad name": 1}}, {"scm": "web-repo"}, "input.scmConstants"),
    ],
    ids=["dotdot", "absolute", "dot-git", "no-scm-endpoint", "yaml-too", "constant-name"],
)
def test_a_git_source_that_cannot_be_read_safely_is_refused_when_saved(
    api: ServedApp, task_input: Doc, endpoints_of: Doc, path: str
) -> None:
    apply = {
        "type": "K8S",
        "endpoints": {"kubernetesServer": "dev-cluster"} | endpoints_of,
        "input": {"action": "APPLY"} | task_input,
    }
    stage = {"taskOrder": ["Apply"], "tasks": {"Apply": apply}}
    document = {"name": "Bad", "project": PROJECT, "stageOrder": ["Dev"], "stages": {"Dev": stage}}
    answer = api.http.post("/api/pipelines", json=document)
    assert answer.status_code == 400, answer.text
    paths = [problem["path"] for problem in answer.json()["error"]["details"]]
    assert any(found.startswith(f"stages.Dev.tasks.Apply.{path}") for found in paths), paths


def test_a_git_endpoint_is_probed_by_asking_the_repository_for_its_branch(repository: GitServer) -> None:
    def repo(branch: str) -> Endpoint:
        return Endpoint("e1", "web-repo", PROJECT, "git", repository.url, branch=branch)

    assert EndpointProber()(repo("main")) == (True, "answered (branch main exists)")
    assert EndpointProber()(repo("release")) == (False, "the repository has no branch release")
    gone = Endpoint("e2", "gone", PROJECT, "git", f"git://127.0.0.1:{free_port()}/web.git")
    answered, message = EndpointProber()(gone)
    assert not answered and message.startswith("unreachable: cannot read branch main of git://127.0.0.1:")
