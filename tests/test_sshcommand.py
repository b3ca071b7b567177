"""The SSH task's remote command text: hosts read, names checked, values quoted, the response file read."""

from __future__ import annotations

import pytest

from orchestrator import sshcommand


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web-1", ("web-1", 22)),
        ("web-1.example.com:2222", ("web-1.example.com", 2222)),
        ("10.0.0.5", ("10.0.0.5", 22)),
        ("::1", ("::1", 22)),
        ("[fd00::5]:2200", ("fd00::5", 2200)),
    ],
)
def test_a_host_is_read_with_its_port(host: str, expected: tuple[str, int]) -> None:
    assert sshcommand.address(host) == expected


@pytest.mark.parametrize("host", ["", "web 1", "-oProxyCommand=x", "user@web", "web:0", "web:99999", "[::1]x", 7])
def test_a_host_that_is_not_one_is_refused(host: object) -> None:
    with pytest.raises(ValueError, match="host"):
        sshcommand.address(host)


def test_environment_names_must_be_identifiers_and_values_scalars() -> None:
    given = {"OK_1": "x", "A B": "x", "X;rm": "x", "SCRIPT_RESPONSE_FILE": "/etc/passwd", "DEEP": {"a": 1}}
    paths = [path for path, _ in sshcommand.environment_problems(given)]
    assert paths == [
        "environmentVariables.A B",
        "environmentVariables.X;rm",
        "environmentVariables.SCRIPT_RESPONSE_FILE",
        "environmentVariables.DEEP",
    ]
    assert sshcommand.argument_problems(["a", 1, True, ["x"]]) == [
        ("arguments[3]", "must be a string, a number or true/false")
    ]


def test_every_value_is_one_quoted_word_of_the_command_line() -> None:
    # Given values that would end a word, or run a command, if they were not quoted
    command = sshcommand.run_command(
        "/tmp/tmp.abc",
        "echo",
        arguments=["a b", "'; rm -rf /; '", True],
        environment={"GREETING": "$(id)"},
        working_directory="/srv/my app",
    )
    # Then each is one single-quoted word
    assert command.startswith("cd -- '/srv/my app' && export GREETING='$(id)' SCRIPT_RESPONSE_FILE=")
    assert "sh /tmp/tmp.abc/script 'a b' ''\"'\"'; rm -rf /; '\"'\"'' true </dev/null 2>&1" in command


def test_the_response_file_gives_its_key_value_lines() -> None:
    text = "version=1.2.3\nnot a pair\nurl=http://x/?a=b\nbad key=1\nversion=1.2.4\r\n"
    assert sshcommand.response_values(text) == {"version": "1.2.4", "url": "http://x/?a=b"}


def test_only_a_plain_directory_from_mktemp_is_used() -> None:
    assert sshcommand.temporary_directory("/tmp/tmp.Ab12") == "/tmp/tmp.Ab12"
    for printed in ("Welcome!\n/tmp/x", "/tmp/$(id)", "/tmp/../etc", ""):
        with pytest.raises(ValueError, match="mktemp"):
            sshcommand.temporary_directory(printed)
