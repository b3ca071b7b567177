"""An SSH task's remote command lines, built from its input: pure text, checked at save time and at run time.

Nothing of a task's input reaches a local shell: the worker speaks SSH itself (paramiko). On the remote host the
script is written to a private temporary directory and run from there, so its text is never part of a command
line; its arguments, environment values and working directory are quoted with `shlex.quote`, and environment
variable names must be identifiers, so no value can end one word of the command and start another. The remote
login shell must be a POSIX shell (sh, bash, dash, zsh, ksh), as Code Stream's SSH task expects too.

What the script writes to `$SCRIPT_RESPONSE_FILE` as `key=value` lines becomes the task's output (Code Stream's
way of handing values to later tasks).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from shlex import quote

RESPONSE_FILE = "SCRIPT_RESPONSE_FILE"
DEFAULT_PORT = 22
# What the script's own output names are written as (and read back from the response file): identifiers, so that
# `${Stage.Task.output.key}` can name each.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# A host name (RFC 1123 labels) or an IPv4 address; an IPv6 address is checked by `ipaddress`.
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.?\Z")
# What `mktemp -d` prints: a path of plain characters (checked before it is used in a command line).
_TEMPORARY = re.compile(r"/[A-Za-z0-9._/-]+\Z")

# How long after the worker gave up on a script the remote `timeout` kills it.
TIMEOUT_GRACE_SECONDS = 5
# Makes the private directory and writes the script (given on standard input) into it; prints the directory.
PREPARE = 'umask 077 && d=$(mktemp -d) && cat > "$d/script" && chmod 700 "$d/script" && printf %s "$d"'


def address(host: object) -> tuple[str, int]:
    """A task's `host` as (host, port): `name`, `name:port`, an IPv4 or IPv6 address, `[v6]:port`.

    Raises ValueError saying what is wrong.
    """
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"host must be a host name or address, optionally with :port, not {host!r}")
    text = host.strip()
    name, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        name, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"host must be [address]:port, not {host!r}")
        port = rest[1:] or port
    elif text.count(":") == 1:
        name, port = text.split(":")
    if not _is_host(name):
        raise ValueError(f"host must be a host name or address, optionally with :port, not {host!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"host's port must be from 1 to 65535, not {port!r}")
    return name, int(port)


def _is_host(name: str) -> bool:
    if _HOST_NAME.match(name):
        return True
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def as_text(value: object) -> str:
    """A scalar as the remote shell is given it (true and false as YAML writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def environment_problems(value: object) -> list[tuple[str, str]]:
    """(path, problem) for each thing wrong with `environmentVariables`: an object of identifiers to scalars."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [("environmentVariables", "must be an object of variable names and values")]
    problems = []
    for name, item in value.items():
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            problems.append((f"environmentVariables.{name}", "must be a name of letters, digits and _"))
        elif name == RESPONSE_FILE:
            problems.append((f"environmentVariables.{name}", "is set by Rollway to the response file's path"))
        elif not _is_scalar(item):
            problems.append((f"environmentVariables.{name}", "must be a string, a number or true/false"))
    return problems


def argument_problems(value: object) -> list[tuple[str, str]]:
    """(path, problem) for each thing wrong with `arguments`: a list of scalars."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [("arguments", "must be a list of the script's arguments")]
    return [
        (f"arguments[{index}]", "must be a string, a number or true/false")
        for index, item in enumerate(value)
        if not _is_scalar(item)
    ]


def temporary_directory(printed: str) -> str:
    """The private directory `PREPARE` printed; ValueError if it is not a plain absolute path."""
    if not _TEMPORARY.match(printed) or "/../" in f"{printed}/":
        raise ValueError(f"the remote host's mktemp printed {printed[:80]!r}, not a directory")
    return printed


def run_command(
    directory: str,
    script: str,
    *,
    arguments: Sequence[object] = (),
    environment: Mapping[str, object] | None = None,
    working_directory: str | None = None,
    timeout: float | None = None,
) -> str:
    """The command line that runs the script written by `PREPARE` in `directory`, its output and errors merged.

    A script that starts with `#!` is run by the interpreter it names; any other by `sh`. With a `timeout`, a host
    that has coreutils' (or busybox's) `timeout` stops the script a little after the worker stopped waiting for
    it, so a script the task gave up on does not run on unseen.
    """
    path = f"{directory}/script"
    exports = [f"{name}={quote(as_text(value))}" for name, value in (environment or {}).items()]
    exports.append(f"{RESPONSE_FILE}={quote(directory + '/response')}")
    runner = quote(path) if script.startswith("#!") else f"sh {quote(path)}"
    words = " ".join([runner, *(quote(as_text(item)) for item in arguments)]) + " </dev/null 2>&1"
    if timeout is not None:
        limit = math.ceil(timeout) + TIMEOUT_GRACE_SECONDS
        words = f"if command -v timeout >/dev/null; then timeout -s KILL {limit} {words}; else {words}; fi"
    steps = [f"cd -- {quote(working_directory)}"] if working_directory else []
    steps += ["export " + " ".join(exports), words]
    return " && ".join(steps)


def collect_command(directory: str, limit: int) -> str:
    """The command line that prints (at most `limit` bytes of) the response file and removes the directory."""
    response = quote(f"{directory}/response")
    return f"head -c {int(limit)} -- {response} 2>/dev/null; rm -rf -- {quote(directory)}"


def response_values(text: str) -> dict[str, str]:
    """The `key=value` lines of a response file as outputs (other lines, and keys that are not identifiers, are
    left out; a later line wins)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sign, value = line.partition("=")
        if sign and IDENTIFIER.match(key.strip()):
            values[key.strip()] = value
    return values
