"""What the commands of a run-to-completion container (a Job's pod) do here: kubesim runs no program.

A container either exits 0 or, when its image matches a ``failing`` pattern, 1. What it prints is a transcript
kubesim can know without running anything: a shell script given as ``sh -c SCRIPT`` is read line by line, and only
``echo``, ``printf '%s\\n'``, variable assignments (``export NAME=value``), ``eval`` and ``set``/``cd``/``:`` are
acted on; every other command prints nothing. Variables expand from the container's environment, the script's own
assignments and the ``variables`` knob, which says what the commands kubesim cannot run would have set (a build's
version, a commit id) and wins over the others. On a failing image the transcript stops at the first command
kubesim does not act on (the one that "failed"), or at the end, with a line naming the exit.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SHELLS = frozenset({"sh", "bash", "ash", "dash", "/bin/sh", "/bin/bash", "/bin/ash", "/bin/dash", "/usr/bin/bash"})
_IGNORED = frozenset({"set", "cd", ":", "true"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
MAX_DEPTH = 4  # eval inside eval: deeper is a loop, not a script


class CommandPolicy:
    """Thread-safe knobs: image patterns whose commands fail, and the values of variables set by commands."""

    def __init__(self, failing: Iterable[str] = (), variables: Mapping[str, str] | None = None):
        self._lock = threading.Lock()
        self._failing = tuple(failing)
        self._variables = dict(variables or {})

    def set(self, failing: Iterable[str] | None = None, variables: Mapping[str, str] | None = None) -> None:
        """Replace either knob; ``None`` keeps it."""
        with self._lock:
            if failing is not None:
                self._failing = tuple(failing)
            if variables is not None:
                self._variables = dict(variables)

    def snapshot(self) -> dict[str, object]:
        """The knobs, as the admin route reports them."""
        with self._lock:
            return {"failing": list(self._failing), "variables": dict(self._variables)}

    def fails(self, image: str) -> bool:
        """Whether a container of ``image`` exits 1."""
        with self._lock:
            return any(image == pattern or fnmatch.fnmatchcase(image, pattern) for pattern in self._failing)

    def variables(self) -> dict[str, str]:
        """What commands kubesim cannot run would have set."""
        with self._lock:
            return dict(self._variables)


@dataclass
class Transcript:
    """A container's run as kubesim tells it: what it printed and how it exited."""

    exit_code: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def transcript(
    command: list[str], environment: Mapping[str, str], variables: Mapping[str, str], fails: bool
) -> Transcript:
    """What a container running ``command`` (its ``command`` then ``args``) prints, and its exit code."""
    result = Transcript()
    if len(command) >= 3 and command[0] in SHELLS and command[1] == "-c":
        shell = _Shell(dict(environment), dict(variables), fails, result)
        shell.run(command[2], 0)
        if shell.stopped:
            return result
    elif command and fails:
        result.lines.append(f"kubesim: {command[0]} is not a shell script kubesim reads")
    if fails:
        result.exit_code = 1
        result.lines.append("kubesim: the container exited 1 (its image is set to fail)")
    return result


class _Shell:
    """The few shell commands kubesim acts on."""

    def __init__(self, env: dict[str, str], knob: dict[str, str], fails: bool, out: Transcript):
        self.env, self.knob, self.fails, self.out = env, knob, fails, out
        self.stopped = False

    def lookup(self, name: str) -> str:
        return self.knob.get(name, self.env.get(name, ""))

    def run(self, script: str, depth: int) -> None:
        for line in script.splitlines():
            if self.stopped or depth > MAX_DEPTH:
                return
            self.line(line.strip(), depth)

    def line(self, line: str, depth: int) -> None:
        if not line or line.startswith("#"):
            return
        try:
            words = [self.expand(word) for word in shlex.split(_protect(line), posix=True)]
        except ValueError:
            words = [line]
        name = words[0] if words else ""
        if name == "echo":
            self.out.lines.append(" ".join(words[2:] if words[1:2] == ["-n"] else words[1:]))
        elif name == "printf" and len(words) >= 2:
            self.out.lines.extend(_printf(words[1], words[2:]))
        elif name == "export" or (name and _ASSIGNMENT.match(name) and len(words) == 1):
            for word in words[1:] if name == "export" else words:
                key, _, value = word.partition("=")
                self.env[key] = value
        elif name == "eval":
            self.run(" ".join(words[1:]), depth + 1)
        elif name not in _IGNORED and self.fails:
            self.out.exit_code = 1
            self.out.lines.append(f"kubesim: {name} exited 1 (its image is set to fail)")
            self.stopped = True

    def expand(self, word: str) -> str:
        """A word with its protected variables put in (see `_protect`)."""
        return _PROTECTED.sub(lambda match: self.variable(match.group(1)), word)

    def variable(self, text: str) -> str:
        match = _VARIABLE.fullmatch(text)
        if match is None:
            return text
        name = match.group(1) or match.group(3)
        value = self.lookup(name)
        return value if value or match.group(2) is None else match.group(2)


# Variables are marked before shlex splits a line, and put in afterwards: inside single quotes they stay as written.
_PROTECTED = re.compile("\x00([^\x00]*)\x00")


def _protect(line: str) -> str:
    """``line`` with each variable outside single quotes wrapped in NUL marks."""
    out, quote, position = [], "", 0
    while position < len(line):
        char = line[position]
        match = _VARIABLE.match(line, position) if char == "$" and quote != "'" else None
        if match is not None:
            out.append(f"\x00{match.group(0)}\x00")
            position = match.end()
            continue
        if char == "\\" and quote != "'":
            out.append(line[position : position + 2])
            position += 2
            continue
        if char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        out.append(char)
        position += 1
    return "".join(out)


def _printf(template: str, values: list[str]) -> list[str]:
    """``printf`` with ``%s`` and ``\\n`` only, the format reused while values remain, as the shell does."""
    pieces: list[str] = []
    remaining = list(values)
    while True:
        text = template.replace("\\n", "\n")
        count = text.count("%s")
        used, remaining = remaining[:count], remaining[count:]
        pieces.append(text.replace("%s", "\x01") if count else text)
        for value in used + [""] * (count - len(used)):
            pieces[-1] = pieces[-1].replace("\x01", value, 1)
        if not remaining or not count:
            break
    return "".join(pieces).splitlines()
