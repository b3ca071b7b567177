"""The task types a pipeline may use, and what each accepts as input.

Checks here are pure and run when a pipeline is saved. A value that holds a `${...}` binding is only known
at run time, so its type is checked by the executor then, and a number against the same `Limit` the save-time
check applies (`bound_number`). Input fields listed in `expression_fields` hold expressions that the executor
evaluates itself (against its own names, such as a POLL's `responseJson`, and the pipeline's bindings), so the
worker leaves them unresolved. `document_fields` hold YAML documents and `url_fields` URLs: bindings go into
those without changing their structure (see `structured.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from orchestrator import defaults, gitsource, sshcommand, workspace
from orchestrator.bindings import BINDING, unescape
from orchestrator.errors import Problem
from orchestrator.fields import Limit, bound_number, expect, flagged, is_bound, limited, read_flag
from orchestrator.manifests import read_objects
from orchestrator.queues import QUEUE_DEFAULT, QUEUE_HTTP, QUEUE_KUBERNETES

HTTP_ACTIONS = ("get", "post", "put", "patch", "delete")
EXIT_CRITERIA = ("success", "failure")
RESPONSE_NAMES = frozenset({"responseJson", "responseCode", "responseBody", "responseHeaders"})

Checker = Callable[[Mapping[str, object]], list[Problem]]

# A header value that holds a line break would end its header and start another.
_LINE_BREAK = re.compile(r"[\r\n\x00]")


# A bound past these would have a task wait, or poll, for longer than anyone means to; a day between polls and a
# week of VERIFY are already far past any rollout.
MAX_POLL_COUNT = 10_000
MAX_POLL_INTERVAL_SECONDS = 86_400
MAX_K8S_TIMEOUT_SECONDS = 7 * 86_400
# Kubernetes keeps a Deployment's revision as an int64.
MAX_REVISION = 2**63 - 1
POLL_LIMITS: Mapping[str, Limit] = {
    "pollCount": Limit("a whole number", True, MAX_POLL_COUNT),
    "pollIntervalSeconds": Limit("a number of seconds", False, MAX_POLL_INTERVAL_SECONDS),
}
# A METRIC task keeps every measurement in its state and output: a thousand is hours of a canary at any sane
# interval, and keeps what travels between attempts small.
MAX_METRIC_COUNT = 1_000
METRIC_LIMITS: Mapping[str, Limit] = {
    "interval": Limit("a number of seconds", False, MAX_POLL_INTERVAL_SECONDS),
    "count": Limit("a whole number", True, MAX_METRIC_COUNT),
    "failureLimit": Limit("a whole number", True, MAX_METRIC_COUNT, zero=True),
    "inconclusiveLimit": Limit("a whole number", True, MAX_METRIC_COUNT, zero=True),
}
METRIC_CONDITIONS = ("successCondition", "failureCondition")
# What a METRIC condition reads besides the pipeline's bindings: the measured value.
METRIC_RESULT = "result"
K8S_LIMITS: Mapping[str, Limit] = {
    "timeout": Limit("a number of seconds", False, MAX_K8S_TIMEOUT_SECONDS),
    "revision": Limit("a revision number", True, MAX_REVISION),
}


class Runner(StrEnum):
    """Where a task type runs: in a worker, from a queue, or in the engine itself (it waits for something the
    engine sees: a person's answer)."""

    WORKER = "worker"
    ENGINE = "engine"


@dataclass(frozen=True)
class TaskType:
    """One task type, declared once: its input fields and how to check them, where it runs and on which queue."""

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    runs_in: Runner = Runner.WORKER
    # The queue a worker takes its runs from (a rollback execution's go to `rollback` whatever their type).
    queue: str = QUEUE_DEFAULT
    expression_fields: frozenset[str] = frozenset()
    local_names: frozenset[str] = frozenset()
    check: Checker = lambda _input: []
    # Checks of the input as the pipeline writes it, before bindings are resolved (only when a pipeline is saved).
    check_written: Checker = lambda _input: []
    endpoint_roles: frozenset[str] = frozenset()
    # Fields holding YAML documents, URLs and HTTP headers: bound so that no value changes their structure.
    document_fields: frozenset[str] = frozenset()
    url_fields: frozenset[str] = frozenset()
    header_fields: frozenset[str] = frozenset()
    # Whether an attempt lost with its worker may simply run again (see `safe_to_repeat`).
    repeatable: Callable[[Mapping[str, object]], bool] = lambda _input: True

    @property
    def fields(self) -> frozenset[str]:
        return self.required | self.optional

    def expressions(self, task_input: Mapping[str, object]) -> dict[str, str]:
        """The expressions in an input, keyed by their path inside it (e.g. `exitCriteria.success`)."""
        found: dict[str, str] = {}
        for name in self.expression_fields:
            value = task_input.get(name)
            if isinstance(value, str):
                found[name] = value
            elif isinstance(value, Mapping):
                found.update(
                    {
                        f"{name}.{key}": text
                        for key, text in value.items()
                        if key in EXIT_CRITERIA and isinstance(text, str)
                    }
                )
        return found


def header_problem(name: object, value: object) -> str | None:
    """Why a header name or value could not be sent as one header, if it could not."""
    if _LINE_BREAK.search(str(name)) or _LINE_BREAK.search(str(value)):
        return "must not hold a line break (it would start another header)"
    return None


def _check_http(task_input: Mapping[str, object]) -> list[Problem]:
    problems = expect(task_input, "url", (str,), "a URL")
    url = task_input.get("url")
    # A path (`/...`, not `//host`) is a URL on the task's kubernetesServer endpoint, sent with its credentials.
    relative = isinstance(url, str) and url.startswith("/") and not url.startswith("//")
    absolute = isinstance(url, str) and url.lower().startswith(("http://", "https://"))
    if isinstance(url, str) and not is_bound(url) and not relative and not absolute:
        where = f"(or a path on the task's {KUBERNETES_SERVER} endpoint)"
        problems.append(Problem("url", f"must be an http:// or https:// URL, not {url!r} {where}"))
    headers = task_input.get("headers")
    if headers is not None and not is_bound(headers):
        if not isinstance(headers, Mapping):
            problems.append(Problem("headers", "must be an object of header names and values"))
        else:
            problems += [
                Problem(f"headers.{key}", "must be a string or a number")
                for key, value in headers.items()
                if not isinstance(value, str | int | float) or isinstance(value, bool)
            ]
            problems += [
                Problem(f"headers.{key}", problem)
                for key, value in headers.items()
                if (problem := header_problem(key, value)) is not None
            ]
    return problems


def _check_rest(task_input: Mapping[str, object]) -> list[Problem]:
    problems = _check_http(task_input) + flagged(task_input, "idempotent")
    action = task_input.get("action", "get")
    if not is_bound(action) and (not isinstance(action, str) or action.lower() not in HTTP_ACTIONS):
        problems.append(Problem("action", f"must be one of {', '.join(HTTP_ACTIONS)}, not {action!r}"))
    return problems


def _rest_repeatable(task_input: Mapping[str, object]) -> bool:
    """GET, PUT and DELETE mean the same sent twice; POST and PATCH only when the task says its endpoint honours
    the Idempotency-Key Rollway sends."""
    action = str(task_input.get("action") or "get").lower()
    try:
        return action not in ("post", "patch") or read_flag("idempotent", task_input.get("idempotent"))
    except ValueError:
        return False


def _check_poll(task_input: Mapping[str, object]) -> list[Problem]:
    problems = _check_http(task_input)
    problems += [problem for name, limit in POLL_LIMITS.items() for problem in limited(task_input, name, limit)]
    problems += flagged(task_input, "ignoreFailure")
    criteria = task_input.get("exitCriteria")
    if criteria is None:
        pass  # reported as required
    elif not isinstance(criteria, Mapping):
        problems.append(Problem("exitCriteria", "must be an object with a 'success' and/or 'failure' expression"))
    else:
        unknown = set(criteria) - set(EXIT_CRITERIA)
        problems += [
            Problem(f"exitCriteria.{key}", "is not 'success' or 'failure'") for key in sorted(unknown, key=str)
        ]
        if not criteria.get("success") and not criteria.get("failure"):
            problems.append(Problem("exitCriteria", "needs a 'success' or a 'failure' expression"))
        problems += [
            Problem(f"exitCriteria.{key}", "must be an expression string")
            for key in EXIT_CRITERIA
            if key in criteria and not isinstance(criteria[key], str)
        ]
    return problems


def _check_condition(task_input: Mapping[str, object]) -> list[Problem]:
    condition = task_input.get("condition")
    if condition is not None and (not isinstance(condition, str) or not condition.strip()):
        return [Problem("condition", "must be a non-empty expression")]
    return []


def _check_metric(task_input: Mapping[str, object]) -> list[Problem]:
    """A METRIC task's URL, numbers and conditions (their syntax is checked with every expression's)."""
    problems = _check_http(task_input)
    problems += [problem for name, limit in METRIC_LIMITS.items() for problem in limited(task_input, name, limit)]
    query = task_input.get("query")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        problems.append(Problem("query", "must be a PromQL query"))
    for name in METRIC_CONDITIONS:
        value = task_input.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(Problem(name, "must be a non-empty expression over 'result'"))
    if all(task_input.get(name) is None for name in METRIC_CONDITIONS):
        problems.append(Problem("successCondition", "a METRIC task needs a successCondition or a failureCondition"))
    return problems


K8S_ACTIONS = ("GET", "CREATE", "APPLY", "DELETE", "ROLLBACK", "VERIFY")
K8S_OBJECT_ACTIONS = ("GET", "CREATE", "APPLY", "DELETE")
KUBERNETES_SERVER = "kubernetesServer"


def _check_manifests(text: object) -> list[Problem]:
    """Problems with a K8S task's multi-document YAML (bindings in it stand for text, as they will be; an escaped
    `\\${` is the `${` it will be, as `structured.bind_documents` reads it)."""
    if isinstance(text, str) and BINDING.fullmatch(text.strip()):
        return []  # the whole YAML comes from a binding: only known at run time
    _, problems = read_objects(unescape(BINDING.sub("x", text)) if isinstance(text, str) else text, "yaml")
    return problems


# Code Stream reads a K8S task's YAML from a Git endpoint's repository when `filepath` names a file in it, with
# `scmConstants` substituted (`gitsource.py`); its exports write both, empty, on every K8S task.
GIT_SOURCE_FIELDS = ("filepath", "scmConstants")


def reads_git(task_input: Mapping[str, object]) -> bool:
    """Whether a K8S task's YAML comes from its Git endpoint's repository (a `filepath` is given)."""
    return task_input.get("filepath") not in (None, "")


def _git_source(task_input: Mapping[str, object]) -> list[Problem]:
    """Empty Git source fields, as exports write them, mean the YAML is inline; a `filepath` reads it from Git."""
    path = task_input.get("filepath")
    constants = task_input.get("scmConstants")
    problems = [] if is_bound(constants) else gitsource.constants_problems(constants)
    if not reads_git(task_input):
        return problems
    if not is_bound(path) and (problem := gitsource.path_problem(path)) is not None:
        problems.append(Problem("filepath", problem))
    if task_input.get("yaml") not in (None, ""):
        problems.append(Problem("yaml", "cannot be given with a filepath: the YAML is read from the file in Git"))
    return problems


def _check_k8s(task_input: Mapping[str, object]) -> list[Problem]:
    action = task_input.get("action")
    if action is None or is_bound(action):
        return []
    if not isinstance(action, str) or action.upper() not in K8S_ACTIONS:
        return [Problem("action", f"must be one of {', '.join(K8S_ACTIONS)}, not {action!r}")]
    problems = [problem for name, limit in K8S_LIMITS.items() for problem in limited(task_input, name, limit)]
    problems += flagged(task_input, "continueOnConflict") + _git_source(task_input)
    if action.upper() in K8S_OBJECT_ACTIONS:
        return problems + (
            []
            if (is_bound(task_input.get("yaml")) and "yaml" in task_input) or reads_git(task_input)
            else _check_manifests(task_input.get("yaml"))
        )
    for name in ("namespace", "deployment"):
        value = task_input.get(name)
        if not is_bound(value) and (not isinstance(value, str) or not value.strip()):
            problems.append(Problem(name, f"is required for {action.upper()}: the Deployment's {name}"))
    return problems


USER_OPERATION = "UserOperation"
EXPIRATION_UNITS: Mapping[str, float] = {"MINUTES": 60.0, "HOURS": 3_600.0, "DAYS": 86_400.0}
# Code Stream's default: an approval nobody answers expires after three days.
DEFAULT_EXPIRATION = (3.0, "DAYS")
# A year is past any change window anyone waits on; fractions of a minute are allowed (and make tests quick).
MAX_EXPIRATION_SECONDS = 366 * 86_400
EXPIRATION_LIMITS: Mapping[str, Limit] = {
    unit: Limit(f"a number of {unit.lower()}", False, int(MAX_EXPIRATION_SECONDS // seconds))
    for unit, seconds in EXPIRATION_UNITS.items()
}


def _names(task_input: Mapping[str, object], name: str) -> list[Problem]:
    """A list of names as written: text, none blank (a bound item or list is known when it runs)."""
    value = task_input.get(name)
    if value is None or is_bound(value):
        return []
    if not isinstance(value, list):
        return [Problem(name, f"must be a list of names, not {value!r}")]
    return [
        Problem(f"{name}[{index}]", f"must be a non-empty name, not {item!r}")
        for index, item in enumerate(value)
        if not isinstance(item, str) or not item.strip()
    ]


def expiration_of(task_input: Mapping[str, object]) -> tuple[float, str]:
    """A bound UserOperation input's expiration as (amount, unit); ValueError naming the field when it is not one.

    `expiration` + `expirationUnit` (MINUTES, HOURS or DAYS, default DAYS), else Code Stream's older
    `expirationInDays`, else three days.
    """
    unit = str(task_input.get("expirationUnit") or "DAYS").upper()
    if unit not in EXPIRATION_UNITS:
        raise ValueError(f"expirationUnit must be one of {', '.join(EXPIRATION_UNITS)}, not {unit!r}")
    for name, in_unit in (("expiration", unit), ("expirationInDays", "DAYS")):
        amount = bound_number(EXPIRATION_LIMITS[in_unit], name, task_input.get(name))
        if amount is not None:
            return float(amount), in_unit
    return DEFAULT_EXPIRATION


def _check_user_operation(task_input: Mapping[str, object]) -> list[Problem]:
    problems = _names(task_input, "approvers") + _names(task_input, "approverGroups")
    approvers, groups = task_input.get("approvers"), task_input.get("approverGroups")
    if not problems and not approvers and not groups:
        problems.append(Problem("approvers", "needs at least one approver (a token name, or ${requestBy})"))
    problems += [problem for name in ("summary", "description") for problem in expect(task_input, name, (str,), "text")]
    problems += [
        problem for name in ("sendemail", "cancelPreviousPendingUserOp") for problem in flagged(task_input, name)
    ]
    unit = task_input.get("expirationUnit", "DAYS")
    if not is_bound(unit) and (not isinstance(unit, str) or unit.upper() not in EXPIRATION_UNITS):
        problems.append(Problem("expirationUnit", f"must be one of {', '.join(EXPIRATION_UNITS)}, not {unit!r}"))
        unit = "DAYS"
    limit = EXPIRATION_LIMITS["DAYS" if is_bound(unit) else str(unit).upper()]
    problems += limited(task_input, "expiration", limit) + limited(
        task_input, "expirationInDays", EXPIRATION_LIMITS["DAYS"]
    )
    if task_input.get("expiration") is not None and task_input.get("expirationInDays") is not None:
        problems.append(Problem("expirationInDays", "cannot be given with expiration: give one of the two"))
    return problems


SSH = "SSH"
# The task's endpoint whose known hosts its host's key must be in (an endpoint of type ssh).
SSH_SERVER = "sshServer"


def is_ssh_server_role(role: str) -> bool:
    """`sshServer`, or `sshServer.<n>`: the project's ssh endpoints given to an SSH task that names none."""
    return role == SSH_SERVER or role.startswith(SSH_SERVER + ".")


SSH_LIMITS: Mapping[str, Limit] = {"timeout": Limit("a number of seconds", False, defaults.SSH_MAX_TIMEOUT_SECONDS)}
SSH_CREDENTIALS = ("password", "privatekey", "passphrase")


def _check_ssh(task_input: Mapping[str, object]) -> list[Problem]:
    """An SSH task's host, script, credentials (from variables: never written in the pipeline) and options."""
    problems = [
        problem for name in ("username", "workingDirectory") for problem in expect(task_input, name, (str,), "text")
    ]
    host, script = task_input.get("host"), task_input.get("script")
    if host is not None and not is_bound(host):
        try:
            sshcommand.address(host)
        except ValueError as error:
            problems.append(Problem("host", str(error).removeprefix("host ")))
    if script is not None and not is_bound(script) and (not isinstance(script, str) or not script.strip()):
        problems.append(Problem("script", "must be the script to run, as text"))
    if not task_input.get("password") and not task_input.get("privatekey"):
        problems.append(Problem("password", "give a password or a privatekey (each from a SECRET variable)"))
    if task_input.get("passphrase") and not task_input.get("privatekey"):
        problems.append(Problem("passphrase", "is the privatekey's passphrase: give the privatekey too"))
    for name, read in (
        ("environmentVariables", sshcommand.environment_problems),
        ("arguments", sshcommand.argument_problems),
    ):
        if not is_bound(task_input.get(name)):
            problems += [Problem(path, message) for path, message in read(task_input.get(name))]
    return (
        problems
        + flagged(task_input, "continueOnCommandFailure")
        + limited(task_input, "timeout", SSH_LIMITS["timeout"])
    )


def _written_ssh(task_input: Mapping[str, object]) -> list[Problem]:
    """An SSH task's credentials, as the pipeline is written: each from a variable, never in the pipeline itself."""
    return [
        Problem(
            name, "must come from a SECRET variable (${var.NAME}): written here, anyone who reads the pipeline has it"
        )
        for name in SSH_CREDENTIALS
        if task_input.get(name) not in (None, "") and not is_bound(task_input.get(name))
    ]


PIPELINE = "Pipeline"


def _check_pipeline(task_input: Mapping[str, object]) -> list[Problem]:
    """A Pipeline task names the pipeline to run, and may give it input (its values may hold bindings)."""
    problems = []
    name = task_input.get("pipeline")
    if name is not None and (not isinstance(name, str) or not name.strip() or is_bound(name)):
        problems.append(Problem("pipeline", f"must be the name of a pipeline of the same project, not {name!r}"))
    properties = task_input.get("inputProperties")
    if properties is not None and not isinstance(properties, Mapping):
        problems.append(Problem("inputProperties", "must be an object of the nested pipeline's input names and values"))
    return problems


TASK_TYPES: Mapping[str, TaskType] = {
    spec.name: spec
    for spec in (
        TaskType(
            "REST",
            frozenset({"url"}),
            frozenset({"action", "headers", "payload", "idempotent"}),
            queue=QUEUE_HTTP,
            check=_check_rest,
            repeatable=_rest_repeatable,
            url_fields=frozenset({"url"}),
            header_fields=frozenset({"headers"}),
        ),
        TaskType(
            "POLL",
            frozenset({"url", "exitCriteria"}),
            frozenset({"headers", "pollCount", "pollIntervalSeconds", "ignoreFailure"}),
            queue=QUEUE_HTTP,
            expression_fields=frozenset({"exitCriteria"}),
            local_names=RESPONSE_NAMES,
            check=_check_poll,
            url_fields=frozenset({"url"}),
            header_fields=frozenset({"headers"}),
        ),
        TaskType(
            "METRIC",
            frozenset({"url", "query"}),
            frozenset({*METRIC_CONDITIONS, *METRIC_LIMITS}),
            queue=QUEUE_HTTP,
            expression_fields=frozenset(METRIC_CONDITIONS),
            local_names=frozenset({METRIC_RESULT}),
            check=_check_metric,
            url_fields=frozenset({"url"}),
        ),
        TaskType(
            "K8S",
            frozenset({"action"}),
            frozenset(
                {"yaml", "timeout", "continueOnConflict", "namespace", "deployment", "revision", *GIT_SOURCE_FIELDS}
            ),
            queue=QUEUE_KUBERNETES,
            check=_check_k8s,
            endpoint_roles=frozenset({KUBERNETES_SERVER}),
            document_fields=frozenset({"yaml"}),
        ),
        # A script may change anything on its host: a lost attempt is not run again (its rollback runs instead).
        TaskType(
            SSH,
            frozenset({"host", "username", "script"}),
            frozenset(
                {*SSH_CREDENTIALS, "workingDirectory", "environmentVariables", "arguments"}
                | {"continueOnCommandFailure", "timeout"}
            ),
            queue=QUEUE_HTTP,
            check=_check_ssh,
            check_written=_written_ssh,
            repeatable=lambda _input: False,
        ),
        # The steps run as a Kubernetes Job named after the run: a lost attempt finds the Job it made and waits on it.
        TaskType(
            workspace.CI,
            frozenset({"steps"}),
            frozenset({"export", "artifacts", "process", "workspace"}),
            queue=QUEUE_KUBERNETES,
            check=workspace.check_ci,
            check_written=workspace.written_ci,
        ),
        TaskType(
            "Condition",
            frozenset({"condition"}),
            frozenset(),
            expression_fields=frozenset({"condition"}),
            check=_check_condition,
        ),
        # The engine holds it for its approvers (see `useroperations.py`).
        TaskType(
            USER_OPERATION,
            frozenset(),
            frozenset(
                {
                    "approvers",
                    "approverGroups",
                    "summary",
                    "description",
                    "expiration",
                    "expirationUnit",
                    "expirationInDays",
                    "sendemail",
                    "cancelPreviousPendingUserOp",
                }
            ),
            runs_in=Runner.ENGINE,
            check=_check_user_operation,
        ),
        # Never sent to a worker: the engine starts a nested execution and the task waits until it ends.
        # The engine starts the nested execution and settles the run when it ends (see `nesting.py`).
        TaskType(
            PIPELINE,
            frozenset({"pipeline"}),
            frozenset({"inputProperties"}),
            runs_in=Runner.ENGINE,
            check=_check_pipeline,
        ),
    )
}


# Code Stream task types Rollway reads but does not run: a pipeline holding one saves disabled, with a warning per
# task, and cannot be enabled or run.
UNSUPPORTED_TYPES = ("Blueprint", "PowerShell", "vRO", "Jenkins", "Bamboo", "TFS", "Custom")


def endpoint_problems(
    type_name: str, task_input: Mapping[str, object], endpoints: Mapping[str, object]
) -> list[Problem]:
    """A REST or POLL `url` that is a path has no host of its own: the task must name the endpoint it is on; a K8S
    task that reads its YAML from Git names its Git endpoint."""
    if type_name == "K8S" and reads_git(task_input) and gitsource.SCM not in endpoints:
        need = f"a K8S task with a filepath needs the git endpoint it reads from (endpoints: {{{gitsource.SCM}: NAME}})"
        return [Problem(f"endpoints.{gitsource.SCM}", need)]
    url = task_input.get("url")
    if "url" not in TASK_TYPES[type_name].url_fields or KUBERNETES_SERVER in endpoints or not isinstance(url, str):
        return []
    if url.startswith("/") and not url.startswith("//"):
        return [
            Problem("input.url", f"is a path: name the endpoint it is on (endpoints: {{{KUBERNETES_SERVER}: NAME}})")
        ]
    return []


def check_task_input(type_name: str, task_input: Mapping[str, object]) -> list[Problem]:
    """Problems with a task's input for its type, with paths relative to the input."""
    spec = TASK_TYPES[type_name]
    # `url: null` gives no more of a URL than leaving it out.
    problems = [Problem(name, "is required") for name in sorted(spec.required) if task_input.get(name) is None]
    problems += [
        Problem(name, f"is not an input of a {type_name} task (expected: {', '.join(sorted(spec.fields))})")
        for name in sorted(set(task_input) - spec.fields)
    ]
    return problems + spec.check(task_input)


def check_written_input(type_name: str, task_input: Mapping[str, object]) -> list[Problem]:
    """Problems with a task's input as written in its pipeline, besides `check_task_input`'s (save time only)."""
    return TASK_TYPES[type_name].check_written(task_input)


def safe_to_repeat(type_name: str, task_input: Mapping[str, object]) -> bool:
    """Whether an attempt whose worker was lost mid-run may run again as a new attempt.

    Every step is idempotent (POLL, Condition, every K8S action, a CI task's Job) except a REST POST or PATCH, which
    is only repeated when its input says `idempotent: true`. An unknown type is not repeated.
    """
    spec = TASK_TYPES.get(type_name)
    return spec is not None and spec.repeatable(task_input)
