"""Who may do what: roles, the actions they allow, and the one decision every API route asks (`can`).

Code Stream's project roles: a viewer reads; an executor also runs pipelines, cancels, pauses, resumes and rolls
back executions and answers approvals; a developer also edits pipelines, endpoints, variables and triggers; an
admin also manages tokens and what is restricted. A principal acts in one project, or (the bootstrap token,
`ROLLWAY_API_TOKEN`) in every project. Objects of a project the principal cannot see do not exist for it: the
API answers 404 for them and leaves them out of lists, so nobody learns another project's names.

Pure: no I/O, no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A token's role in its project."""

    VIEWER = "viewer"
    EXECUTOR = "executor"
    DEVELOPER = "developer"
    ADMIN = "admin"


class Action(StrEnum):
    """What a request does, as far as permissions go."""

    READ = "read"  # see pipelines, executions, endpoints (never credentials), variables (never secret values)
    RUN = "run"  # trigger, cancel, pause, resume, roll back, rerun; answer approvals
    EDIT = "edit"  # create, change and delete pipelines, endpoints, variables, triggers
    ADMINISTER = "administer"  # tokens, RESTRICTED variables


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.EXECUTOR: frozenset({Action.READ, Action.RUN}),
    Role.DEVELOPER: frozenset({Action.READ, Action.RUN, Action.EDIT}),
    Role.ADMIN: frozenset(Action),
}

ANY_PROJECT = None
BOOTSTRAP_NAME = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a name (what `requestBy` and events record), a role, and the project it acts in.

    `project` None means every project: only the bootstrap token, and the open API when no token is set.
    `token_id` is the stored token's id (None for the bootstrap token).
    """

    name: str
    role: Role
    project: str | None = ANY_PROJECT
    token_id: str | None = None

    def sees(self, project: str) -> bool:
        """Whether objects of `project` exist for this principal at all."""
        return self.project is None or self.project == project

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def bootstrap(name: str = BOOTSTRAP_NAME) -> Principal:
    """The principal of `ROLLWAY_API_TOKEN`: admin of every project."""
    return Principal(name, Role.ADMIN, ANY_PROJECT)


def allows(role: Role, action: Action) -> bool:
    """Whether a role may take an action in its own project."""
    return action in ROLE_ACTIONS[role]


def can(principal: Principal, action: Action, project: str) -> bool:
    """Whether `principal` may take `action` on objects of `project`."""
    return principal.sees(project) and allows(principal.role, action)
