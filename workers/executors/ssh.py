"""The SSH task: a script run on a remote host over SSH (paramiko), as Code Stream's SSH task runs it.

The host's key must be among the known hosts of the task's `sshServer` endpoint (an endpoint of type ssh): an
unknown or different key is refused, never accepted on first use. The credentials come from the task's input
(SECRET variables, masked out of everything the run records: see `runner.py`). The script runs in three steps on
one connection (see `orchestrator/sshcommand.py`): written to a private temporary directory, run there with its
arguments and environment, then its `$SCRIPT_RESPONSE_FILE` read back and the directory removed. Output:
`response` (what it printed, errors included), `exitCode`, and the response file's `key=value` lines.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

from orchestrator import defaults, sshcommand
from orchestrator.endpoints import SSH
from orchestrator.errors import NotFound
from orchestrator.fields import bound_number, read_flag
from orchestrator.settings import DEFAULT_EGRESS_DENY, Network
from orchestrator.tasktypes import SSH_LIMITS, SSH_SERVER, is_ssh_server_role
from workers.egress import refusal
from workers.executors.base import Failed, Outcome, Succeeded, TaskCall
from workers.executors.endpoint import EndpointLookup

KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


class Refused(Exception):
    """The task cannot run as given, or the host refused it: the message says why (never a credential)."""


class TimedOut(Exception):
    """The script ran past the task's timeout."""


@dataclass(frozen=True)
class SshTask:
    """An SSH task's bound input, read and checked."""

    host: str
    port: int
    username: str
    script: str
    password: str | None = None
    private_key: str | None = None
    passphrase: str | None = None
    working_directory: str | None = None
    environment: Mapping[str, object] = field(default_factory=dict)
    arguments: tuple[object, ...] = ()
    continue_on_failure: bool = False
    timeout: float = defaults.SSH_TIMEOUT_SECONDS


def read_task(given: Mapping[str, Any]) -> SshTask:
    """An SSH task's bound input; raises Refused naming the field that is wrong."""
    try:
        host, port = sshcommand.address(given.get("host"))
        problems = sshcommand.environment_problems(given.get("environmentVariables"))
        problems += sshcommand.argument_problems(given.get("arguments"))
        if problems:
            raise ValueError(f"{problems[0][0]} {problems[0][1]}")
        timeout = bound_number(SSH_LIMITS["timeout"], "timeout", given.get("timeout"))
        return SshTask(
            host=host,
            port=port,
            username=_text(given, "username", required=True) or "",
            script=_text(given, "script", required=True) or "",
            password=_text(given, "password"),
            private_key=_text(given, "privatekey"),
            passphrase=_text(given, "passphrase"),
            working_directory=_text(given, "workingDirectory"),
            environment=dict(given.get("environmentVariables") or {}),
            arguments=tuple(given.get("arguments") or ()),
            continue_on_failure=read_flag("continueOnCommandFailure", given.get("continueOnCommandFailure")),
            timeout=defaults.SSH_TIMEOUT_SECONDS if timeout is None else float(timeout),
        )
    except ValueError as error:
        raise Refused(str(error)) from None


def _text(given: Mapping[str, Any], name: str, required: bool = False) -> str | None:
    value = given.get(name)
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        # Never the value itself: it may be a credential.
        raise ValueError(f"{name} must be non-empty text")
    return value


def add_known_hosts(keys: paramiko.HostKeys, text: str) -> None:
    """Add an ssh endpoint's known_hosts lines to paramiko's host keys (unreadable lines were refused when saved)."""
    for line in text.splitlines():
        try:
            entry = HostKeyEntry.from_line(line)
        except (InvalidHostKey, ValueError):
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """A private key in OpenSSH or PEM form (Ed25519, ECDSA or RSA); raises Refused saying why it cannot be used."""
    for kind in KEY_CLASSES:
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise Refused("the privatekey is encrypted: give its passphrase") from None
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise Refused("the privatekey cannot be read (OpenSSH or PEM, Ed25519, ECDSA or RSA), or its passphrase is wrong")


@dataclass(frozen=True)
class Ran:
    """What the script did."""

    response: str
    exit_code: int
    truncated: bool
    values: Mapping[str, str]


class SshExecutor:
    """Runs SSH tasks; `endpoints` finds the task's sshServer endpoint by id, `deny` is the networks no task may
    reach (`ROLLWAY_EGRESS_DENY`, as for REST and POLL tasks)."""

    def __init__(
        self,
        endpoints: EndpointLookup,
        deny: Sequence[Network] = DEFAULT_EGRESS_DENY,
        connect_timeout: float = defaults.SSH_CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.endpoints = endpoints
        self.deny = tuple(deny)
        self.connect_timeout = connect_timeout

    def execute(self, call: TaskCall) -> Outcome:
        try:
            task = read_task(call.input)
            keys = self._known_hosts(call.endpoints)
            ran = self._run(task, keys)
        except Refused as refused:
            return Failed(str(refused))
        except TimedOut:
            return Failed(f"the script ran longer than its timeout of {task.timeout:g} s on {task.host}: stopped")
        output: dict[str, Any] = {**ran.values, "response": ran.response, "exitCode": ran.exit_code}
        if ran.truncated:
            output["responseTruncated"] = True
        if ran.exit_code != 0 and not task.continue_on_failure:
            return Failed(f"the script exited with {ran.exit_code} on {task.host}", output)
        return Succeeded(output)

    def _known_hosts(self, endpoints: Mapping[str, str]) -> str:
        """The known hosts of the task's sshServer endpoint; of a task that names none (as Code Stream's exports
        write SSH tasks), those of every ssh endpoint of its project, which the engine handed on as
        `sshServer.<n>` roles."""
        ids = [endpoint_id for role, endpoint_id in sorted(endpoints.items()) if is_ssh_server_role(role)]
        if not ids:
            raise Refused(
                f"the task names no {SSH_SERVER} endpoint and its project has no ssh endpoint (an endpoint of type "
                "ssh whose knownHosts holds the host's key): Rollway never logs in to a host whose key it cannot check"
            )
        found = []
        for endpoint_id in ids:
            try:
                endpoint = self.endpoints(endpoint_id)
            except NotFound as error:
                raise Refused(f"the {SSH_SERVER} endpoint cannot be used: {error.message}") from None
            if endpoint.type != SSH or not endpoint.known_hosts:
                raise Refused(f"the {SSH_SERVER} endpoint '{endpoint.name}' is not an ssh endpoint with knownHosts")
            found.append(endpoint.known_hosts)
        return "\n".join(found)

    def _run(self, task: SshTask, keys: str) -> Ran:
        deadline = time.monotonic() + task.timeout
        client = self._connect(task, keys)
        directory = None
        try:
            printed, _, status = _exec(client, sshcommand.PREPARE, task.script.encode(), deadline, 4096)
            if status != 0:
                raise Refused(f"the script could not be written to a temporary directory on {task.host}")
            directory = sshcommand.temporary_directory(printed.decode(errors="replace"))
            command = sshcommand.run_command(
                directory,
                task.script,
                arguments=task.arguments,
                environment=task.environment,
                working_directory=task.working_directory,
                timeout=task.timeout,
            )
            response, truncated, exit_code = _exec(client, command, None, deadline, defaults.SSH_RESPONSE_LIMIT_BYTES)
            limit = defaults.SSH_RESPONSE_FILE_LIMIT_BYTES
            values, _, _ = _exec(client, sshcommand.collect_command(directory, limit), None, deadline, limit)
        except TimedOut:
            self._clean_up(client, directory)
            raise
        except ValueError as error:
            raise Refused(str(error)) from None
        except (paramiko.SSHException, OSError) as error:
            raise Refused(f"the connection to {task.host} failed: {type(error).__name__}: {error}") from None
        finally:
            client.close()
        text = response.decode(errors="replace")
        return Ran(text, exit_code, truncated, sshcommand.response_values(values.decode(errors="replace")))

    def _clean_up(self, client: paramiko.SSHClient, directory: str | None) -> None:
        """Remove a timed-out script's directory, if the connection still lets us (the script itself is stopped
        by the remote `timeout` when the host has it: see `sshcommand.run_command`)."""
        if directory is None:
            return
        try:
            deadline = time.monotonic() + self.connect_timeout
            _exec(client, sshcommand.collect_command(directory, 0), None, deadline, 0)
        except (TimedOut, paramiko.SSHException, OSError):
            pass

    def _socket(self, task: SshTask) -> socket.socket:
        """A connection to the task's host, at an address the egress policy allows (checked, then connected to)."""
        try:
            found = socket.getaddrinfo(task.host, task.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise Refused(f"cannot resolve {task.host}: {error}") from None
        refused = refusal(task.host, [str(sockaddr[0]) for *_, sockaddr in found], self.deny)
        if refused is not None:
            raise Refused(refused)
        failure: OSError = OSError(f"{task.host} resolves to no address")
        for family, kind, protocol, _, sockaddr in found:
            connection = socket.socket(family, kind, protocol)
            connection.settimeout(self.connect_timeout)
            try:
                connection.connect(sockaddr)
                return connection
            except OSError as error:
                connection.close()
                failure = error
        raise Refused(f"cannot connect to {task.host}:{task.port}: {failure}")

    def _connect(self, task: SshTask, keys: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        add_known_hosts(client.get_host_keys(), keys)
        where = f"{task.host}:{task.port}"
        key = None if task.private_key is None else private_key(task.private_key, task.passphrase)
        connection = self._socket(task)
        try:
            # The host's name (not the address connected to) is what its key is looked up by.
            client.connect(
                task.host,
                task.port,
                task.username,
                sock=connection,
                password=task.password,
                pkey=key,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            raise Refused(
                f"host key of {where} does not match the {SSH_SERVER} endpoint's known hosts (it offered "
                f"{error.key.get_name()} {error.key.fingerprint}): refused. If the host's key was changed on "
                "purpose, put its new key in the endpoint's knownHosts"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise Refused(f"{where} refused to log in {task.username!r} with the given credentials") from None
        except (paramiko.SSHException, OSError) as error:
            client.close()
            raise Refused(_connect_problem(where, error)) from None
        return client


def _connect_problem(where: str, error: Exception) -> str:
    if isinstance(error, paramiko.SSHException) and "known_hosts" in str(error):
        return (
            f"host key of {where} is unknown: the {SSH_SERVER} endpoint's knownHosts has no key for it, and Rollway "
            "never accepts an unknown host key (add the host's key, as ssh-keyscan prints it)"
        )
    return f"cannot connect to {where}: {type(error).__name__}: {error}"


def _exec(
    client: paramiko.SSHClient, command: str, stdin: bytes | None, deadline: float, limit: int
) -> tuple[bytes, bool, int]:
    """Run one command line on the connection: (what it printed, up to `limit` bytes; whether more was dropped;
    its exit status). Raises TimedOut past the deadline."""
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("the connection was closed")
    channel = transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
    try:
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin)
            channel.shutdown_write()
        kept, truncated = _read(channel, deadline, limit)
        return kept, truncated, channel.recv_exit_status()
    finally:
        channel.close()


def _read(channel: paramiko.Channel, deadline: float, limit: int) -> tuple[bytes, bool]:
    kept, truncated = bytearray(), False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimedOut()
        channel.settimeout(left)
        try:
            chunk = channel.recv(32_768)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(kept), truncated
        room = limit - len(kept)
        kept += chunk[:room]
        truncated = truncated or len(chunk) > room
