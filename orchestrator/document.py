"""Pipeline documents: YAML or JSON text in Code Stream's export shape, read into a validated `Pipeline`.

Reading never stops at the first problem: every problem is collected with its path (for example
`stages.Development.tasks.Update Deployment.input.url`) and reported at once in `PipelineInvalid`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from orchestrator import expressions, gaps, workspace
from orchestrator.bindings import BINDING, Ref, RefKind, parse_ref, unterminated
from orchestrator.decoding import foreign_values, size_problem
from orchestrator.errors import BindingError, ExpressionError, PipelineInvalid, Problem
from orchestrator.fields import read_flag
from orchestrator.gaps import EndpointLookup, VariableLookup
from orchestrator.inputs import reference_head
from orchestrator.notifications import NOTICE_NAMES, read_notifications
from orchestrator.pipeline import InputMeta, Pipeline, RollbackLink, Stage, Task, TaskKey
from orchestrator.tasktypes import (
    PIPELINE,
    RESPONSE_NAMES,
    TASK_TYPES,
    UNSUPPORTED_TYPES,
    check_task_input,
    check_written_input,
    endpoint_problems,
)

MAX_NAME_LENGTH = 200  # the width of the name columns
DEFAULT_PROJECT = "default"
FORBIDDEN_IN_NAMES = (".", ",", "${", "}", "[", "]")
TOP_LEVEL = frozenset(
    {
        "kind",
        "name",
        "project",
        "description",
        "enabled",
        "concurrency",
        "input",
        "_inputMeta",
        "output",
        "stageOrder",
        "stages",
        "tags",
        "notifications",
        "workspace",
        "options",
        "rollbacks",
    }
)
# Fields of Code Stream exports that Rollway accepts and does not use.
IGNORED = frozenset({"id", "starred", "icon", "_warnings"})
ROLLBACK_ENTRY_FIELDS = frozenset({"name", "stage", "task", "inputs"})
STAGE_FIELDS = frozenset({"taskOrder", "tasks", "rollback", "tags"})
TASK_FIELDS = frozenset({"type", "input", "endpoints", "preCondition", "ignoreFailure", "rollback", "tags"})


@dataclass(frozen=True)
class RollbackTarget:
    """What validation needs to know of a pipeline another one names as its rollback."""

    name: str
    inputs: frozenset[str]
    mandatory: frozenset[str]


TargetLookup = Callable[[str, str], RollbackTarget | None]
"""(project, pipeline name) -> the rollback pipeline, or None when it does not exist."""


def load_pipeline(
    document: object,
    targets: TargetLookup | None,
    default_project: str = DEFAULT_PROJECT,
    endpoints: EndpointLookup | None = None,
    variables: VariableLookup | None = None,
) -> Pipeline:
    """Build a Pipeline from a decoded document; raises PipelineInvalid listing every problem.

    `targets` finds the pipelines that rollback links name; None skips that check (for documents the store saved
    after they passed it). An endpoint or project variable that `endpoints` or `variables` say does not exist, and
    a task type Rollway does not run, are no problems: the pipeline is read disabled (see `gaps.py`).
    """
    too_big = size_problem(document)
    if too_big is not None:
        raise PipelineInvalid("the pipeline has 1 problem", [Problem("", too_big)])
    reader = _Reader(targets)
    reader.problems += foreign_values(document, "")
    pipeline = reader.pipeline(document, default_project)
    # A value JSON cannot hold (NaN) is also what its field's own check says of it: report it once.
    reader.problems = list(dict.fromkeys(reader.problems))
    if reader.problems or pipeline is None:
        count = len(reader.problems)
        raise PipelineInvalid(f"the pipeline has {count} problem{'s' if count != 1 else ''}", reader.problems)
    if pipeline.enabled and gaps.warnings(pipeline, endpoints, variables):
        return replace(pipeline, enabled=False)
    return pipeline


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


class _Reader:
    """Reads a document into the model, collecting problems instead of raising."""

    def __init__(self, targets: TargetLookup | None) -> None:
        self.targets = targets
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
            self.problem(path, "must be an object with string keys")
            return {}
        return value

    def string(self, value: object, path: str, default: str = "", required: bool = False) -> str:
        if value is None and not required:
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            self.problem(path, "is required" if value is None else "must be a non-empty string")
            return default
        return value

    def flag(self, value: object, path: str, default: bool) -> bool:
        """A true-or-false field: a boolean, or text saying one (`'false'`), as Code Stream's exports write it."""
        if value is None:
            return default
        try:
            return read_flag(path, value)
        except ValueError:
            self.problem(path, f"must be true or false, not {value!r}")
            return default

    def tags(self, value: object, path: str = "tags") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            self.problem(path, "must be a list of strings")
            return ()
        return tuple(value)

    def concurrency(self, value: object) -> int:
        """A whole number from 1 to 1000 (numeric text too, as exports write it)."""
        number = value
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 1000:
            self.problem("concurrency", f"must be a whole number from 1 to 1000, not {value!r}")
            return 10
        return number

    def unknown_fields(self, value: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in sorted(set(value) - allowed - IGNORED):
            self.problem(_join(path, key), f"is not a known field (expected one of: {', '.join(sorted(allowed))})")

    def label(self, value: str, path: str, what: str) -> bool:
        """Check a name or project for what any label must be: not too long, no control characters."""
        if len(value) > MAX_NAME_LENGTH:
            self.problem(path, f"{what} must be at most {MAX_NAME_LENGTH} characters, not {len(value)}")
        elif any(ord(character) < 32 or ord(character) == 127 for character in value):
            self.problem(path, f"{what} {value!r} must not contain control characters")
        else:
            return True
        return False

    def name(self, value: str, path: str, what: str) -> None:
        if not self.label(value, path, f"{what} name"):
            return
        bad = [token for token in FORBIDDEN_IN_NAMES if token in value]
        if not value.strip() or value != value.strip():
            self.problem(path, f"{what} name {value!r} must be non-empty without leading or trailing spaces")
        elif bad:
            self.problem(path, f"{what} name {value!r} must not contain {' '.join(repr(token) for token in bad)}")

    # -- the document, top down

    def pipeline(self, document: object, default_project: str) -> Pipeline | None:
        if not isinstance(document, Mapping):
            self.problem("", "the document must be an object (a YAML mapping or JSON object)")
            return None
        doc = self.mapping(document, "")
        self.unknown_fields(doc, TOP_LEVEL, "")
        if doc.get("kind", "PIPELINE") != "PIPELINE":
            self.problem("kind", f"must be PIPELINE, not {doc.get('kind')!r}")
        concurrency = self.concurrency(doc.get("concurrency", 10))
        inputs = self.inputs(doc)
        stages = {
            name: stage
            for name, raw in self.mapping(doc.get("stages"), "stages").items()
            if (stage := self.stage(name, raw)) is not None
        }
        stages = self.rollback_entries(doc.get("rollbacks"), stages)
        name = self.string(doc.get("name"), "name", required=True)
        project = self.string(doc.get("project"), "project", default=default_project) or default_project
        self.label(name, "name", "the pipeline name")
        self.label(project, "project", "the project")
        notifications, problems = read_notifications(doc.get("notifications"))
        self.problems += problems
        pipeline = Pipeline(
            name=name,
            project=project,
            description=self.string(doc.get("description"), "description"),
            enabled=self.flag(doc.get("enabled"), "enabled", False),
            concurrency=concurrency,
            input=inputs,
            input_meta=self.input_meta(doc, inputs),
            output=self.mapping(doc.get("output"), "output"),
            stage_order=self.stage_order(doc, stages),
            stages=stages,
            tags=self.tags(doc.get("tags")),
            notifications=notifications,
            workspace=self.mapping(doc.get("workspace"), "workspace"),
            options=self.tags(doc.get("options"), "options"),
        )
        # Bindings, expressions and links are checked whenever the shape holds together, so that their
        # problems come in the same answer as the others.
        if _well_formed(pipeline):
            _Checker(self, pipeline).check()
        return pipeline

    def inputs(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        inputs = dict(self.mapping(doc.get("input"), "input"))
        for name, value in inputs.items():
            if isinstance(value, dict | list):
                self.problem(_join("input", name), "a default input value must be a string, number or boolean")
        return inputs

    def input_meta(self, doc: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, InputMeta]:
        metas: dict[str, InputMeta] = {}
        for name, raw in self.mapping(doc.get("_inputMeta"), "_inputMeta").items():
            path = _join("_inputMeta", name)
            meta = self.mapping(raw, path)
            self.unknown_fields(meta, frozenset({"mandatory", "description"}), path)
            if name not in inputs:
                self.problem(path, f"describes input '{name}', which is not in 'input'")
            metas[name] = InputMeta(
                mandatory=self.flag(meta.get("mandatory"), _join(path, "mandatory"), False),
                description=self.string(meta.get("description"), _join(path, "description")),
            )
        return metas

    def stage_order(self, doc: Mapping[str, Any], stages: Mapping[str, Stage]) -> tuple[str, ...]:
        order = doc.get("stageOrder")
        if not isinstance(order, list) or not order or not all(isinstance(name, str) for name in order):
            self.problem("stageOrder", "must be a non-empty list of stage names")
            return ()
        for index, name in enumerate(order):
            if name not in stages:
                self.problem(f"stageOrder[{index}]", f"names stage '{name}', which is not in 'stages'")
            if order.index(name) != index:
                self.problem(f"stageOrder[{index}]", f"lists stage '{name}' twice")
        for name in stages:
            if name not in order:
                self.problem(_join("stages", name), "is not listed in 'stageOrder'")
        return tuple(order)

    def stage(self, name: str, raw: object) -> Stage | None:
        path = _join("stages", name)
        self.name(name, path, "stage")
        stage = self.mapping(raw, path)
        self.unknown_fields(stage, STAGE_FIELDS, path)
        tasks = {
            task_name: task
            for task_name, task_raw in self.mapping(stage.get("tasks"), _join(path, "tasks")).items()
            if (task := self.task(task_name, task_raw, _join(path, "tasks", task_name))) is not None
        }
        if not tasks:
            self.problem(_join(path, "tasks"), "a stage needs at least one task")
        return Stage(
            name=name,
            groups=self.task_order(stage.get("taskOrder"), tasks, path),
            tasks=tasks,
            rollback=self.rollback(stage.get("rollback"), _join(path, "rollback")),
        )

    def task_order(self, order: object, tasks: Mapping[str, Task], path: str) -> tuple[tuple[str, ...], ...]:
        path = _join(path, "taskOrder")
        if not isinstance(order, list) or not all(isinstance(entry, str) for entry in order):
            self.problem(path, "must be a list of task names (a comma-separated entry runs its tasks in parallel)")
            return ()
        groups = tuple(tuple(name.strip() for name in entry.split(",")) for entry in order)
        seen: set[str] = set()
        for index, group in enumerate(groups):
            for name in group:
                if name not in tasks:
                    self.problem(f"{path}[{index}]", f"names task '{name}', which is not in 'tasks'")
                elif name in seen:
                    self.problem(f"{path}[{index}]", f"lists task '{name}' twice")
                seen.add(name)
        for name in tasks:
            if name not in seen:
                self.problem(_join(path.removesuffix(".taskOrder"), "tasks", name), "is not listed in 'taskOrder'")
        return groups

    def task(self, name: str, raw: object, path: str) -> Task | None:
        self.name(name, path, "task")
        task = self.mapping(raw, path)
        self.unknown_fields(task, TASK_FIELDS, path)
        type_name = task.get("type")
        task_input = self.mapping(task.get("input"), _join(path, "input"))
        # A type Rollway reads but does not run keeps its input as written (its pipeline stays disabled).
        if isinstance(type_name, str) and type_name in UNSUPPORTED_TYPES:
            return Task(name=name, type=type_name, input=task_input, endpoints=self.endpoint_names(task, path))
        # An unhashable value (a YAML list or mapping) cannot even be looked up.
        if not isinstance(type_name, str) or type_name not in TASK_TYPES:
            self.problem(
                _join(path, "type"), f"unknown task type {type_name!r} (expected one of: {', '.join(TASK_TYPES)})"
            )
            type_name = None
        if type_name is not None:
            for problem in check_task_input(str(type_name), task_input) + check_written_input(
                str(type_name), task_input
            ):
                self.problem(_join(path, "input", problem.path), problem.message)
        endpoints = self.endpoint_names(task, path)
        if type_name is not None:
            for role in sorted(TASK_TYPES[str(type_name)].endpoint_roles - set(endpoints)):
                self.problem(_join(path, "endpoints", role), f"a {type_name} task needs its {role} endpoint")
            for problem in endpoint_problems(str(type_name), task_input, endpoints):
                self.problem(_join(path, problem.path), problem.message)
        return Task(
            name=name,
            type=str(type_name),
            input=task_input,
            endpoints=endpoints,
            pre_condition=self.string(task.get("preCondition"), _join(path, "preCondition")) or None,
            ignore_failure=self.flag(task.get("ignoreFailure"), _join(path, "ignoreFailure"), False),
            rollback=self.rollback(task.get("rollback"), _join(path, "rollback")),
        )

    def endpoint_names(self, task: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        endpoints = self.mapping(task.get("endpoints"), _join(path, "endpoints"))
        for key, value in endpoints.items():
            if not isinstance(value, str) or not value.strip():
                self.problem(_join(path, "endpoints", key), "must be the name of an endpoint")
        return endpoints

    def rollback_entries(self, raw: object, stages: dict[str, Stage]) -> dict[str, Stage]:
        """Code Stream's top-level `rollbacks: [{name, stage, task?, inputs}]`, put on the stages and tasks they name.

        A stage or task that has a `rollback` of its own, or that two entries name, is a problem: which link wins
        would be a guess.
        """
        if raw is None:
            return stages
        if not isinstance(raw, list):
            self.problem("rollbacks", "must be a list of {name, stage, task, inputs}")
            return stages
        for index, entry in enumerate(raw):
            path = f"rollbacks[{index}]"
            fields = self.mapping(entry, path)
            self.unknown_fields(fields, ROLLBACK_ENTRY_FIELDS, path)
            link = RollbackLink(
                pipeline=self.string(fields.get("name"), _join(path, "name"), required=True),
                input=self.mapping(fields.get("inputs"), _join(path, "inputs")),
            )
            stage_name = self.string(fields.get("stage"), _join(path, "stage"), required=True)
            task_name = self.string(fields.get("task"), _join(path, "task"))
            placed = self.place_link(stages, stage_name, task_name, link, path)
            if placed is not None:
                stages[stage_name] = placed
        return stages

    def place_link(
        self, stages: Mapping[str, Stage], stage_name: str, task_name: str, link: RollbackLink, path: str
    ) -> Stage | None:
        """The stage with the link on it (or on its task), or None after reporting why it cannot take it."""
        stage = stages.get(stage_name)
        if stage is None:
            if stage_name:
                self.problem(_join(path, "stage"), f"names stage '{stage_name}', which is not in 'stages'")
            return None
        if not task_name:
            if stage.rollback is not None:
                self.problem(path, f"stage '{stage_name}' already has a rollback ({stage.rollback.pipeline})")
                return None
            return replace(stage, rollback=link)
        task = stage.tasks.get(task_name)
        if task is None:
            self.problem(_join(path, "task"), f"names task '{task_name}', which is not in stage '{stage_name}'")
            return None
        if task.rollback is not None:
            self.problem(path, f"task '{stage_name}.{task_name}' already has a rollback ({task.rollback.pipeline})")
            return None
        return replace(stage, tasks={**stage.tasks, task_name: replace(task, rollback=link)})

    def rollback(self, raw: object, path: str) -> RollbackLink | None:
        if raw is None:
            return None
        link = self.mapping(raw, path)
        self.unknown_fields(link, frozenset({"pipeline", "input"}), path)
        return RollbackLink(
            pipeline=self.string(link.get("pipeline"), _join(path, "pipeline"), required=True),
            input=self.mapping(link.get("input"), _join(path, "input")),
        )


class _Checker:
    """Checks that need the whole pipeline: bindings, expressions and rollback links."""

    def __init__(self, reader: _Reader, pipeline: Pipeline) -> None:
        self.reader = reader
        self.pipeline = pipeline
        # A value the reader already found wrong (an empty condition, say) is not reported a second time.
        self.reported = frozenset(problem.path for problem in reader.problems)

    def problem(self, path: str, message: str) -> None:
        if path not in self.reported:
            self.reader.problem(path, message)

    def check(self) -> None:
        for name, value in self.pipeline.output.items():
            self.values(value, _join("output", name), lambda _key: True)
        for _, _, task, stage in self.pipeline.ordered_tasks():
            self.task(stage, task)
        for stage in self.pipeline.stages.values():
            if stage.rollback is not None:
                self.link(stage.rollback, _join("stages", stage.name, "rollback"), self._up_to_stage(stage.name))
        self.notifications()
        self.reader.problems += workspace.problems(self.pipeline)
        self.values(dict(self.pipeline.workspace), "workspace", lambda _key: False)

    def notifications(self) -> None:
        """Bindings in notifications see what the execution has (any task's output) and the event's own names."""
        for where, text in self.pipeline.notifications.bound_texts():
            if unterminated(text):
                self.problem(where, f"has an unterminated binding in {text!r}")
            for reference in BINDING.findall(text):
                if reference.strip() not in NOTICE_NAMES:
                    self.reference(reference, where, lambda _key: True)

    def _up_to_stage(self, stage_name: str) -> Callable[[TaskKey], bool]:
        """A stage's rollback may read outputs of tasks in that stage and in the stages before it."""
        position = self.pipeline.stage_order.index(stage_name)
        return lambda key: self.pipeline.stage_order.index(key[0]) <= position

    def task(self, stage: Stage, task: Task) -> None:
        path = _join("stages", stage.name, "tasks", task.name)
        key = (stage.name, task.name)
        if task.type in UNSUPPORTED_TYPES:
            return  # never run: its input is kept as written
        spec = TASK_TYPES[task.type]
        expression_paths = spec.expressions(task.input)
        plain = {name: value for name, value in task.input.items() if name not in spec.expression_fields}
        self.values(plain, _join(path, "input"), lambda other: self.pipeline.runs_before(other, key))
        for field_path, text in expression_paths.items():
            self.expression(text, _join(path, "input", field_path), key, spec.local_names)
        if task.pre_condition is not None:
            self.expression(task.pre_condition, _join(path, "preCondition"), key, frozenset())
        if task.rollback is not None:
            self.link(task.rollback, _join(path, "rollback"), lambda other: not self.pipeline.runs_before(key, other))
        if task.type == PIPELINE and task.input.get("pipeline") == self.pipeline.name:
            self.problem(_join(path, "input", "pipeline"), "a pipeline cannot run itself as a nested pipeline")

    def expression(self, text: str, path: str, key: TaskKey, local_names: frozenset[str]) -> None:
        try:
            parsed = expressions.parse(text)
        except ExpressionError as error:
            self.problem(path, error.message)
            return
        for reference in parsed.references:
            head = reference_head(reference)
            if head in RESPONSE_NAMES and head not in local_names:
                self.problem(path, f"'{head}' is only known in the exit criteria of a POLL task")
            elif head not in local_names:
                self.reference(reference, path, lambda other: self.pipeline.runs_before(other, key))

    def values(self, value: object, path: str, visible: Callable[[TaskKey], bool]) -> None:
        """Check the bindings in a value, each reported at the path of the string that holds it."""
        for where, text in _strings(value, path):
            if unterminated(text):
                self.problem(where, f"has an unterminated binding in {text!r}")
            for reference in BINDING.findall(text):
                self.reference(reference, where, visible)

    def reference(self, text: str, path: str, visible: Callable[[TaskKey], bool]) -> None:
        try:
            ref = parse_ref(text)
        except BindingError as error:
            self.problem(path, error.message)
            return
        message = self.reference_problem(ref, visible)
        if message:
            self.problem(path, f"'${{{ref.text}}}': {message}")

    def reference_problem(self, ref: Ref, visible: Callable[[TaskKey], bool]) -> str | None:
        if ref.kind is RefKind.INPUT and ref.name not in self.pipeline.input:
            return f"the pipeline has no input named '{ref.name}'"
        if ref.kind is not RefKind.OUTPUT:
            return None
        stage = self.pipeline.stages.get(ref.stage)
        if stage is None:
            return f"there is no stage named '{ref.stage}'"
        if ref.task not in stage.tasks:
            return f"stage '{ref.stage}' has no task named '{ref.task}'"
        if not visible(ref.task_key):
            return f"task '{ref.stage}.{ref.task}' has not run yet at this point"
        task = stage.tasks[ref.task]
        if ref.part == "input" and ref.path[0] not in task.input:
            return f"task '{ref.stage}.{ref.task}' has no input named '{ref.path[0]}'"
        return None

    def link(self, link: RollbackLink, path: str, visible: Callable[[TaskKey], bool]) -> None:
        self.values(dict(link.input), _join(path, "input"), visible)
        if not link.pipeline:  # already reported as missing
            return
        if link.pipeline == self.pipeline.name:
            self.problem(_join(path, "pipeline"), "a pipeline cannot be its own rollback")
            return
        if self.reader.targets is None:
            return
        target = self.reader.targets(self.pipeline.project, link.pipeline)
        if target is None:
            self.problem(
                _join(path, "pipeline"),
                f"rollback pipeline '{link.pipeline}' does not exist in project '{self.pipeline.project}'",
            )
            return
        for name in sorted(set(link.input) - target.inputs):
            self.problem(_join(path, "input", name), f"'{link.pipeline}' has no input named '{name}'")
        for name in sorted(target.mandatory - set(link.input)):
            self.problem(_join(path, "input"), f"mandatory input '{name}' of '{link.pipeline}' is not given")


def _well_formed(pipeline: Pipeline) -> bool:
    """Whether every stage and task is in the run order exactly once, and every task has a known type."""
    return sorted(pipeline.stage_order) == sorted(pipeline.stages) and all(
        sorted(name for group in stage.groups for name in group) == sorted(stage.tasks)
        and all(task.type in TASK_TYPES or task.type in UNSUPPORTED_TYPES for task in stage.tasks.values())
        for stage in pipeline.stages.values()
    )


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    """Every string inside a value, with its path."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in _strings(item, _join(path, str(key)))]
    if isinstance(value, list | tuple):
        return [found for index, item in enumerate(value) for found in _strings(item, f"{path}[{index}]")]
    return []


def to_document(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline in Code Stream's export shape (what `load_pipeline` reads back to the same pipeline)."""
    document: dict[str, Any] = {
        "kind": "PIPELINE",
        "name": pipeline.name,
        "project": pipeline.project,
        "description": pipeline.description,
        "enabled": pipeline.enabled,
        "concurrency": pipeline.concurrency,
        "input": dict(pipeline.input),
        "_inputMeta": {
            name: {"mandatory": meta.mandatory, "description": meta.description}
            for name, meta in pipeline.input_meta.items()
        },
        "output": dict(pipeline.output),
        "tags": list(pipeline.tags),
        "stageOrder": list(pipeline.stage_order),
        "stages": {name: _stage_document(pipeline.stages[name]) for name in pipeline.stage_order},
    }
    if pipeline.notifications:
        document["notifications"] = pipeline.notifications.document()
    if pipeline.workspace:
        document["workspace"] = dict(pipeline.workspace)
    if pipeline.options:
        document["options"] = list(pipeline.options)
    return document


def _link_document(link: RollbackLink | None) -> dict[str, Any] | None:
    return None if link is None else {"pipeline": link.pipeline, "input": dict(link.input)}


def _stage_document(stage: Stage) -> dict[str, Any]:
    document: dict[str, Any] = {
        "taskOrder": [",".join(group) for group in stage.groups],
        "tasks": {name: _task_document(task) for name, task in stage.tasks.items()},
    }
    if stage.rollback is not None:
        document["rollback"] = _link_document(stage.rollback)
    return document


def _task_document(task: Task) -> dict[str, Any]:
    document: dict[str, Any] = {"type": task.type, "input": dict(task.input)}
    if task.endpoints:
        document["endpoints"] = dict(task.endpoints)
    if task.pre_condition is not None:
        document["preCondition"] = task.pre_condition
    if task.ignore_failure:
        document["ignoreFailure"] = True
    if task.rollback is not None:
        document["rollback"] = _link_document(task.rollback)
    return document
