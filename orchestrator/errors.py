"""The one exception tree of Rollway.

Every error we raise on purpose derives from `RollwayError`. The HTTP layer maps the tree to answers in
one place (`api/errors.py`) through `http_status` and `code`, so a new error only needs a class here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem found in a document: where (a dotted path) and what."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RollwayError(Exception):
    """Root of every error Rollway raises on purpose."""

    http_status = 500
    code = "internal"

    def __init__(self, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class BadRequest(RollwayError):
    """The request itself is malformed: not JSON, wrong field types, unknown fields."""

    http_status = 400
    code = "bad_request"


class PipelineInvalid(BadRequest):
    """A pipeline document has one or more problems; `details` lists each with its path."""

    code = "pipeline_invalid"


class InputInvalid(BadRequest):
    """The input given to an execution is missing a mandatory value or names an unknown one."""

    code = "input_invalid"


class ExpressionError(RollwayError):
    """An expression (preCondition, Condition, exit criteria) does not parse or cannot be evaluated."""

    http_status = 400
    code = "expression_invalid"


class BindingError(RollwayError):
    """A `${...}` binding is malformed or names something that has no value."""

    http_status = 400
    code = "binding_invalid"


class NotFound(RollwayError):
    """The pipeline, execution or other object named in the request does not exist."""

    http_status = 404
    code = "not_found"


class Conflict(RollwayError):
    """The request is valid but clashes with current state (duplicate name, object still in use)."""

    http_status = 409
    code = "conflict"


class PipelineDisabled(Conflict):
    """An execution was requested for a pipeline that is not enabled."""

    code = "pipeline_disabled"


class RollbackNotReady(Conflict):
    """A release was refused because its rollback could not run (`readiness.py`); `details` lists each reason."""

    code = "rollback_not_ready"


class InvalidTransition(Conflict):
    """A status change that the transition table does not allow."""

    code = "invalid_transition"


class Unauthorized(RollwayError):
    """The request carries no valid bearer token."""

    http_status = 401
    code = "unauthorized"


class Forbidden(RollwayError):
    """The caller's token is valid, but its role may not do this."""

    http_status = 403
    code = "forbidden"


class EndpointError(RollwayError):
    """An HTTP endpoint a task calls cannot be reached, or does not answer in time."""

    code = "endpoint_error"


class ClusterError(RollwayError):
    """A Kubernetes API answered with an error, or could not be asked."""

    code = "cluster_error"

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class ClusterUnreachable(ClusterError):
    """No answer from the Kubernetes API: connection refused, DNS, TLS or a timeout."""

    code = "cluster_unreachable"


class ClusterBusy(ClusterError):
    """The Kubernetes API answered 429 or 5xx: worth asking again after a while."""

    code = "cluster_busy"


class ClusterRefused(ClusterError):
    """The Kubernetes API refused the endpoint's credentials (401) or their rights (403)."""

    code = "cluster_refused"


class RolloutFailed(ClusterError):
    """A Deployment's rollout ended without completing (ProgressDeadlineExceeded) or ran past the task's timeout."""

    code = "rollout_failed"


class ConfigurationError(RollwayError):
    """A setting read from the environment has a value Rollway cannot use."""

    code = "configuration"


class SchemaOutdated(RollwayError):
    """The database schema is older than this code needs; the message names `rollway db upgrade`."""

    code = "schema_outdated"


class SchemaTooNew(RollwayError):
    """The database schema is at a revision this code does not know: a newer Rollway upgraded it."""

    code = "schema_too_new"


class DatabaseUnavailable(RollwayError):
    """The database cannot be reached (refused, lost, timed out): the API answers 503, a worker retries."""

    http_status = 503
    code = "unavailable"
