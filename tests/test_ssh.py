"""The SSH task against a real OpenSSH server: scripts run on the remote host with their arguments, environment
and response file, a failing script fails its task (and rolls back) unless told to go on, host keys are checked
against the task's ssh endpoint, and credentials never show.

One `sshd` (Debian's openssh-server) serves the module: started on a free local port with a host key, config and
authorized keys of its own, for a dedicated local user `rollway-ssh` (created if missing; its password is set
for the module and locked afterwards). It needs root, as sshd does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from api.cli import cli

from rollway_testing import TOKEN, ServedApp, ended, task_of, unavailable

SSHD = Path("/usr/sbin/sshd")
USER = "rollway-ssh"
PROJECT = "ops"


@dataclass(frozen=True)
class Sshd:
    """A running sshd: where it listens, its host key as a known_hosts line, and a login for `USER`."""

    port: int
    known_hosts: str
    other_key: str
    private_key: str
    password: str
    log: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> str:
    """A new ed25519 key pair at `path`; its public half, as `type base64`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _user(password: str) -> None:
    """The dedicated login, with `password` (created once per machine; locked again after the module)."""
    if subprocess.run(["id", USER], check=False, capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}", text=True, check=True)


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    """One sshd for the module, on its own host key and config."""
    if not SSHD.exists() or shutil.which("ssh-keygen") is None or os.geteuid() != 0:
        unavailable("sshd (openssh-server, run as root)", FileNotFoundError(str(SSHD)))
    # sshd reads authorized_keys as the user it logs in: the directory must be open to it.
    folder = Path(tempfile.mkdtemp(prefix="rollway-sshd-"))
    folder.chmod(0o755)
    host_key = _keygen(folder / "host_key")
    other_key = _keygen(folder / "other_key")
    client_key = _keygen(folder / "client_key")
    (folder / "authorized_keys").write_text(client_key + "\n")
    (folder / "authorized_keys").chmod(0o644)
    password = secrets.token_urlsafe(16)
    _user(password)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation directory
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {folder / 'host_key'}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                f"AllowUsers {USER}",
                "UsePAM no",
                "StrictModes no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    log = folder / "sshd.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=output, stderr=output)
    try:
        _wait_for_banner(port, process, log)
        yield Sshd(
            port=port,
            known_hosts=f"[127.0.0.1]:{port} {host_key}\n",
            other_key=f"[127.0.0.1]:{port} {other_key}\n",
            private_key=(folder / "client_key").read_text(),
            password=password,
            log=log,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        subprocess.run(["usermod", "--lock", USER], check=False)
        shutil.rmtree(folder, ignore_errors=True)


# -- the pipelines


def endpoint(api: ServedApp, name: str, known_hosts: str) -> None:
    api.create_at("/api/endpoints", {"name": name, "project": PROJECT, "type": "ssh", "knownHosts": known_hosts})


def secret(api: ServedApp, name: str, value: str) -> None:
    api.create_at("/api/variables", {"name": name, "project": PROJECT, "type": "SECRET", "value": value})


def ssh_task(sshd: Sshd, script: str, server: str = "hosts", **given: Any) -> dict[str, Any]:
    credentials = {"password": "${var.sshPassword}"} if "privatekey" not in given else {}
    return {
        "type": "SSH",
        "endpoints": {"sshServer": server},
        "input": {"host": sshd.host, "username": USER, "script": script, **credentials, **given},
    }


def pipeline(name: str, tasks: dict[str, Any], **stage: Any) -> dict[str, Any]:
    return {
        "kind": "PIPELINE",
        "name": name,
        "project": PROJECT,
        "enabled": True,
        "stageOrder": ["Remote"],
        "stages": {"Remote": {"taskOrder": list(tasks), "tasks": tasks, **stage}},
    }


def run(api: ServedApp, document: dict[str, Any]) -> str:
    created = api.create(document)
    answer = api.http.post(f"/api/pipelines/{created['id']}/executions", json={"input": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["executionId"])


def test_a_script_runs_remotely_and_its_response_file_feeds_the_next_task(
    api: ServedApp, worker: Any, sshd: Sshd
) -> None:
    # Given an ssh endpoint with the server's host key, the login's key and password as SECRET variables, and a
    # pipeline whose first task (key login) prints its arguments, environment and directory and writes two values
    # to $SCRIPT_RESPONSE_FILE, and whose second (password login) reads one of them
    endpoint(api, "hosts", sshd.known_hosts)
    secret(api, "sshKey", sshd.private_key)
    secret(api, "sshPassword", sshd.password)
    first = ssh_task(
        sshd,
        'printf "%s|" "$@"; echo "$GREETING"; pwd; whoami\n'
        'echo "version=1.2.3" >> "$SCRIPT_RESPONSE_FILE"\necho "build=42" >> "$SCRIPT_RESPONSE_FILE"\n'
        'echo "a password echoed: $PW"\n',
        privatekey="${var.sshKey}",
        arguments=["it's", "a b", "$(touch /tmp/rollway-ssh-injected)", 7],
        environmentVariables={"GREETING": "x; y `id`", "PW": "${var.sshPassword}"},
        workingDirectory="/tmp",
    )
    second = ssh_task(
        sshd, 'echo "got $VERSION and $1"', environmentVariables={"VERSION": "${Remote.Build.output.version}"}
    )
    second["input"]["arguments"] = ["${Remote.Build.output.build}"]

    # When it runs
    view = ended(api, run(api, pipeline("Remote-Build", {"Build": first, "Use": second})))

    # Then both tasks completed: what the script printed, as the shell got each word (none ran locally or remotely)
    assert view["status"] == "COMPLETED", [(t["name"], t["statusMessage"]) for t in view["stages"][0]["tasks"]]
    build = task_of(view, "Remote", "Build")["output"]
    lines = build["response"].splitlines()
    assert lines[:3] == ["it's|a b|$(touch /tmp/rollway-ssh-injected)|7|x; y `id`", "/tmp", USER]
    assert not Path("/tmp/rollway-ssh-injected").exists()
    assert build["exitCode"] == 0 and (build["version"], build["build"]) == ("1.2.3", "42")
    # ... the later task was given the values its bindings named
    used = task_of(view, "Remote", "Use")["output"]
    assert used["response"] == "got 1.2.3 and 42\n" and used["exitCode"] == 0

    # ... and neither credential shows: not in the output the script echoed, the view, the history or the log
    assert lines[3] == "a password echoed: *****"
    shown = [
        api.http.get(f"/api/executions/{view['id']}").text,
        api.http.get(f"/api/executions/{view['id']}/events").text,
        worker.log(),
    ]
    key_body = sshd.private_key.splitlines()[1]
    for text in shown:
        assert sshd.password not in text and key_body not in text


def test_a_failing_script_fails_and_rolls_back_unless_told_to_go_on_and_a_slow_one_is_stopped(
    api: ServedApp, worker: Any, sshd: Sshd
) -> None:
    # Given a script that exits 3, in a stage linked to a rollback pipeline, and the same script told to go on
    # (as Code Stream's exports write it: the string 'true')
    endpoint(api, "hosts", sshd.known_hosts)
    secret(api, "sshPassword", sshd.password)
    undo = pipeline("Remote-Undo", {"Undo": {"type": "Condition", "input": {"condition": "1 == 1"}}})
    api.create(undo)
    failing = pipeline(
        "Remote-Fail", {"Deploy": ssh_task(sshd, "echo broken; exit 3")}, rollback={"pipeline": "Remote-Undo"}
    )
    going_on = pipeline("Remote-Go-On", {"Deploy": ssh_task(sshd, "exit 3", continueOnCommandFailure="true")})
    # ... and a script that runs past its timeout
    slow = pipeline("Remote-Slow", {"Deploy": ssh_task(sshd, "sleep 60", timeout=1)})

    # When they run
    failed_id, went_on_id, slow_id = run(api, failing), run(api, going_on), run(api, slow)

    # Then the failing one's task failed with the exit code and its stage's rollback ran
    failed = ended(api, failed_id)
    assert failed["status"] == "ROLLBACK_COMPLETED", failed
    deploy = task_of(failed, "Remote", "Deploy")
    assert deploy["status"] == "FAILED" and "exited with 3" in deploy["statusMessage"]
    assert deploy["output"]["exitCode"] == 3 and deploy["output"]["response"] == "broken\n"
    # ... and the other completed, its exit code in its output
    went_on = ended(api, went_on_id)
    assert went_on["status"] == "COMPLETED", went_on
    assert task_of(went_on, "Remote", "Deploy")["output"]["exitCode"] == 3
    # ... and the slow one failed, stopped at its timeout
    stopped = ended(api, slow_id)
    assert stopped["status"] == "FAILED", stopped
    assert "ran longer than its timeout of 1 s" in task_of(stopped, "Remote", "Deploy")["statusMessage"]


def test_a_host_key_not_in_the_endpoint_a_denied_address_and_a_wrong_password_are_refused(
    api: ServedApp, worker: Any, sshd: Sshd
) -> None:
    # Given one endpoint that lists another key for the server, one that lists only another host, and the right one
    endpoint(api, "impostor", sshd.other_key)
    endpoint(api, "elsewhere", sshd.known_hosts.replace(f"]:{sshd.port}", "]:1"))
    endpoint(api, "hosts", sshd.known_hosts)
    secret(api, "sshPassword", sshd.password)
    secret(api, "wrongPassword", "not-" + sshd.password)

    # ... and a task whose host is a cloud metadata address (denied by the default ROLLWAY_EGRESS_DENY)
    metadata = ssh_task(sshd, "echo ran", server="impostor")
    metadata["input"]["host"] = "169.254.169.254"

    # When a task logs in through each
    mismatched = run(api, pipeline("Remote-Impostor", {"Run": ssh_task(sshd, "echo ran", server="impostor")}))
    unknown = run(api, pipeline("Remote-Unknown", {"Run": ssh_task(sshd, "echo ran", server="elsewhere")}))
    denied = run(api, pipeline("Remote-Metadata", {"Run": metadata}))
    wrong = ssh_task(sshd, "echo ran", password="${var.wrongPassword}")
    refused = run(api, pipeline("Remote-Wrong", {"Run": wrong}))

    # Then each fails naming its problem, and nothing ran
    messages = {}
    runs = {"mismatched": mismatched, "unknown": unknown, "denied": denied, "refused": refused}
    for name, execution_id in runs.items():
        view = ended(api, execution_id)
        assert view["status"] == "FAILED", view
        task = task_of(view, "Remote", "Run")
        assert "response" not in (task["output"] or {})
        messages[name] = task["statusMessage"]
    assert f"host key of 127.0.0.1:{sshd.port} does not match" in messages["mismatched"]
    assert f"host key of 127.0.0.1:{sshd.port} is unknown" in messages["unknown"]
    assert "169.254.169.254 is denied by ROLLWAY_EGRESS_DENY" in messages["denied"]
    # ... and a wrong password, with the right host key, is a refused login
    assert f"refused to log in '{USER}'" in messages["refused"]


def test_an_ssh_task_and_endpoint_are_checked_when_saved(api: ServedApp) -> None:
    # Given an SSH task with a password written in the pipeline, a bad host, environment name and timeout
    bad = {
        "type": "SSH",
        "input": {
            "host": "web-1:99999",
            "username": "deploy",
            "script": "true",
            "password": "hunter2",
            "environmentVariables": {"NOT A NAME": "x"},
            "timeout": "forever",
            "continueOnCommandFailure": "maybe",
        },
    }
    # When it is saved
    answer = api.http.post("/api/pipelines", json=pipeline("Remote-Bad", {"Run": bad}))

    # Then each problem is named, and the password is not repeated back
    assert answer.status_code == 400
    paths = {item["path"] for item in answer.json()["error"]["details"]}
    prefix = "stages.Remote.tasks.Run.input."
    wanted = ["host", "password", "environmentVariables.NOT A NAME", "timeout", "continueOnCommandFailure"]
    assert {prefix + name for name in wanted} <= paths, answer.text
    assert "hunter2" not in answer.text

    # ... and an ssh endpoint needs readable known_hosts lines
    refused = api.http.post(
        "/api/endpoints", json={"name": "h", "project": PROJECT, "type": "ssh", "knownHosts": "web-1 ssh-ed25519 !!"}
    )
    assert refused.status_code == 400 and "knownHosts[1]" in refused.text


def test_a_code_stream_export_of_ssh_tasks_naming_no_endpoint_runs_on_the_projects_known_hosts(
    api: ServedApp, worker: Any, sshd: Sshd
) -> None:
    # Given the project's ssh endpoint and password, and the export imported as it is (its SSH tasks name no
    # endpoint, as Code Stream's never do)
    project = "migration"
    api.create_at(
        "/api/endpoints", {"name": "hosts", "project": project, "type": "ssh", "knownHosts": sshd.known_hosts}
    )
    api.create_at(
        "/api/variables", {"name": "sshPassword", "project": project, "type": "SECRET", "value": sshd.password}
    )
    export = Path(__file__).parent / "codestream" / "ssh-configure.yaml"
    imported = CliRunner().invoke(
        cli,
        ["--url", api.url, "import", "codestream", str(export)],
        env={"ROLLWAY_API_TOKEN": TOKEN, "ROLLWAY_URL": None},
    )
    assert f"pipeline {project}/Configure Web Hosts saved, enabled (created)" in imported.output, imported.output

    # When it runs on the sshd
    [found] = api.http.get("/api/pipelines", params={"name": "Configure Web Hosts"}).json()
    answer = api.http.post(f"/api/pipelines/{found['id']}/executions", json={"input": {"host": sshd.host}})
    assert answer.status_code == 202, answer.text
    view = ended(api, answer.json()["executionId"])

    # Then it completes: the script's values (the escaped binding passed through as text) feed the next task, whose
    # failing command goes on as continueOnCommandFailure says
    assert view["status"] == "COMPLETED", [(t["name"], t["statusMessage"]) for t in view["stages"][0]["tasks"]]
    install = task_of(view, "Configure", "Install")["output"]
    assert install["response"] == "installing nginx for Configure Web Hosts\n"
    assert install["package"] == "nginx" and install["template"] == "${resource.name}"
    report = task_of(view, "Configure", "Report")["output"]
    assert report["response"] == "nginx was COMPLETED\n" and report["exitCode"] == 3


def test_an_ssh_task_naming_no_endpoint_in_a_project_without_one_is_refused(
    api: ServedApp, worker: Any, sshd: Sshd
) -> None:
    secret(api, "sshPassword", sshd.password)
    task = ssh_task(sshd, "echo hi")
    del task["endpoints"]
    view = ended(api, run(api, pipeline("No-Hosts", {"Hi": task})))
    assert view["status"] == "FAILED"
    message = task_of(view, "Remote", "Hi")["statusMessage"]
    assert "its project has no ssh endpoint" in message
