"""A smart CD template request: the body of `POST /templates/cd`, read and checked into a `TemplateRequest`.

Every problem is reported at once, each with the field it is about (`environments.dev.endpoint`,
`kubernetesYaml`, `service`, ...). Endpoints are looked up through a function the caller gives, which keeps
reading pure: the API passes one over its store, tests pass a dict's `get`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.cdtemplate.manifest import SERVICE_FIELD, Application, find_application, parse_manifest
from orchestrator.document import DEFAULT_PROJECT, FORBIDDEN_IN_NAMES, MAX_NAME_LENGTH
from orchestrator.errors import BadRequest, Problem

ROLLING_UPGRADE = "rolling-upgrade"
BLUE_GREEN = "blue-green"
CANARY = "canary"
MODELS = (ROLLING_UPGRADE, BLUE_GREEN, CANARY)
RUNTIME_INPUT = "runtime-input"
IMAGE_SOURCES = (RUNTIME_INPUT,)
DEFAULT_POLL_COUNT = 10
DEFAULT_POLL_INTERVAL = 3.0
FIELDS = frozenset(
    {
        "project",
        "pipelineName",
        "kubernetesYaml",
        "service",
        "environments",
        "imageSource",
        "deploymentModel",
        "rollback",
        "healthCheckUrl",
        "healthCheckPollCount",
        "healthCheckIntervalSeconds",
    }
)
ENVIRONMENT_FIELDS = frozenset({"endpoint", "healthCheckUrl"})
# (key in the request, stage name, word in the rollback pipeline's name), in release order.
ENVIRONMENTS = (("dev", "Development", "Dev"), ("prod", "Production", "Prod"))
_LONGEST_SUFFIX = max(len(f"_{word}_Rollback") for _, _, word in ENVIRONMENTS)

EndpointUrl = Callable[[str, str], str | None]
"""(project, endpoint name) -> the endpoint's Kubernetes API URL, or None when the project has no such endpoint."""


def is_path(url: str) -> bool:
    """Whether a health-check URL is the application's path (`/healthz`), polled through the service proxy."""
    return url.startswith("/") and not url.startswith("//")


@dataclass(frozen=True)
class Environment:
    """One environment a release goes through: its stage, the cluster endpoint (with its API URL), and the
    health-check URL it polls instead of the request's (None: the request's)."""

    key: str
    stage: str
    word: str
    endpoint: str
    url: str
    health_url: str | None = None


@dataclass(frozen=True)
class HealthCheck:
    """What is polled until it answers 200: a path (`/healthz`) through each cluster's service proxy, with the
    environment's endpoint credentials, or an absolute URL polled as given."""

    url: str
    poll_count: int = DEFAULT_POLL_COUNT
    interval: float = DEFAULT_POLL_INTERVAL


@dataclass(frozen=True)
class TemplateRequest:
    """A checked template request: what to generate, for which application, through which environments."""

    project: str
    name: str
    model: str
    app: Application
    environments: tuple[Environment, ...]
    health: HealthCheck
    rollback: bool = True

    def rollback_name(self, environment: Environment) -> str:
        """`<Name>_Dev_Rollback`, `<Name>_Prod_Rollback`."""
        return f"{self.name}_{environment.word}_Rollback"


def read_request(body: Mapping[str, Any], endpoint_url: EndpointUrl) -> TemplateRequest:
    """The request in a decoded JSON body; raises BadRequest with one detail per problem."""
    reader = _Reader(body)
    problems = reader.problems
    problems += [Problem(name, "is not a field of a template request") for name in sorted(set(body) - FIELDS)]
    project = reader.text("project", DEFAULT_PROJECT)
    name = reader.pipeline_name()
    model = reader.choice("deploymentModel", MODELS, None)
    reader.choice("imageSource", IMAGE_SOURCES, RUNTIME_INPUT)
    rollback = reader.flag("rollback", True)
    environments = reader.environments(project, endpoint_url)
    # Every environment may name its own; the request's is needed only when one does not.
    overridden = len(environments) == len(ENVIRONMENTS) and all(env.health_url for env in environments)
    health = HealthCheck(
        reader.health_url(reader.body.get("healthCheckUrl"), "healthCheckUrl", required=not overridden),
        reader.integer("healthCheckPollCount", DEFAULT_POLL_COUNT, 1, 1000),
        reader.number("healthCheckIntervalSeconds", DEFAULT_POLL_INTERVAL, 3600),
    )
    paths = [env for env in environments if is_path(env.health_url or health.url)]
    for env in paths:
        reader.needs_api_url(env)
    app = reader.application()
    if problems or app is None or model is None:
        count = len(problems)
        raise BadRequest(f"the template request has {count} problem{'s' if count != 1 else ''}", problems)
    return TemplateRequest(project, name, model, app, environments, health, rollback)


class _Reader:
    """Reads the fields of a request body, collecting problems instead of raising."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def text(self, field: str, default: str | None) -> str:
        """A non-empty string field; `default` None makes it required."""
        return self.check_text(self.body.get(field), field, default)

    def check_text(self, value: object, path: str, default: str | None) -> str:
        if value is None and default is not None:
            return default
        if value is None:
            self.problem(path, "is required")
        elif not isinstance(value, str) or not value.strip():
            self.problem(path, "must be a non-empty string")
        elif len(value) > MAX_NAME_LENGTH or any(ord(char) < 32 or ord(char) == 127 for char in value):
            self.problem(path, f"must be at most {MAX_NAME_LENGTH} characters, without control characters")
        else:
            return value
        return ""

    def pipeline_name(self) -> str:
        name = self.text("pipelineName", None)
        if not name:
            return name
        bad = [token for token in FORBIDDEN_IN_NAMES if token in name]
        if name != name.strip() or bad:
            listed = " ".join(repr(token) for token in bad) or "leading or trailing spaces"
            self.problem("pipelineName", f"a pipeline name must not contain {listed}")
        elif len(name) > MAX_NAME_LENGTH - _LONGEST_SUFFIX:
            # Room is left for the rollback pipelines' names, which add a suffix.
            self.problem("pipelineName", f"must be at most {MAX_NAME_LENGTH - _LONGEST_SUFFIX} characters")
        return name

    def choice(self, field: str, allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.body.get(field, default)
        if value is None:
            self.problem(field, f"is required: one of {', '.join(allowed)}")
        elif value not in allowed:
            self.problem(field, f"must be one of {', '.join(allowed)}, not {value!r}")
        else:
            return str(value)
        return None

    def flag(self, field: str, default: bool) -> bool:
        value = self.body.get(field, default)
        if not isinstance(value, bool):
            self.problem(field, f"must be true or false, not {value!r}")
            return default
        return value

    def integer(self, field: str, default: int, low: int, high: int) -> int:
        value = self.body.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(field, f"must be a whole number from {low} to {high}, not {value!r}")
            return default
        return value

    def number(self, field: str, default: float, high: float) -> float:
        value = self.body.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.problem(field, f"must be a number of seconds, not {value!r}")
        elif not 0 < value <= high:
            self.problem(field, f"must be more than 0 and at most {high:g} seconds, not {value!r}")
        else:
            return float(value)
        return default

    def health_url(self, value: object, path: str, required: bool) -> str:
        """A health-check URL: a path such as /healthz, or an absolute http(s) URL; "" when absent or wrong."""
        if value is None and not required:
            return ""
        url = self.check_text(value, path, None)
        absolute = url.lower().startswith(("http://", "https://")) and len(url.split("//", 1)[1]) > 0
        if url and (not (is_path(url) or absolute) or any(char.isspace() for char in url) or "${" in url):
            self.problem(
                path,
                f"must be the application's health path, such as /healthz (polled through each cluster's "
                f"service proxy with its endpoint's credentials), or an absolute http:// or https:// URL "
                f"(polled as given), not {url!r}",
            )
            return ""
        return url

    def needs_api_url(self, environment: Environment) -> None:
        """A health path goes through the cluster's API: its endpoint must have an API URL."""
        if not environment.url.lower().startswith(("http://", "https://")):
            self.problem(
                f"environments.{environment.key}.endpoint",
                f"endpoint '{environment.endpoint}' has no API URL (a kubeconfig only): the health check needs one",
            )

    def environments(self, project: str, endpoint_url: EndpointUrl) -> tuple[Environment, ...]:
        raw = self.body.get("environments")
        if not isinstance(raw, Mapping):
            self.problem("environments", "is required: {dev: {endpoint: NAME}, prod: {endpoint: NAME}}")
            return ()
        known = {key for key, _, _ in ENVIRONMENTS}
        for key in sorted(set(raw) - known, key=str):
            self.problem(f"environments.{key}", "is not an environment of the template (expected: dev, prod)")
        found = []
        for key, stage, word in ENVIRONMENTS:
            environment = self.environment(raw.get(key), key, project, endpoint_url)
            if environment is not None:
                found.append(Environment(key, stage, word, *environment))
        return tuple(found)

    def environment(
        self, raw: object, key: str, project: str, endpoint_url: EndpointUrl
    ) -> tuple[str, str, str | None] | None:
        """(endpoint name, its URL, its own health-check URL) of one environment."""
        path = f"environments.{key}"
        if not isinstance(raw, Mapping):
            self.problem(path, "is required: {endpoint: NAME}, the Kubernetes endpoint of the environment")
            return None
        for extra in sorted(set(raw) - ENVIRONMENT_FIELDS, key=str):
            self.problem(f"{path}.{extra}", "is not a field of an environment (expected: endpoint, healthCheckUrl)")
        health_url = self.health_url(raw.get("healthCheckUrl"), f"{path}.healthCheckUrl", required=False) or None
        endpoint = self.check_text(raw.get("endpoint"), f"{path}.endpoint", None)
        if not endpoint:
            return None
        url = endpoint_url(project, endpoint)
        if url is None:
            self.problem(f"{path}.endpoint", f"endpoint '{endpoint}' does not exist in project '{project}'")
            return None
        return endpoint, url, health_url

    def application(self) -> Application | None:
        manifest, problems = parse_manifest(self.body.get("kubernetesYaml"))
        self.problems += problems
        service = self.text(SERVICE_FIELD, None)
        if manifest is None or not service:
            return None
        app, problems = find_application(manifest, service)
        self.problems += problems
        return app


def request_body(
    *,
    project: str,
    name: str,
    kubernetes_yaml: str,
    service: str,
    endpoints: Mapping[str, str],
    model: str,
    health_check_url: str,
    rollback: bool = True,
) -> dict[str, Any]:
    """A template request body (what `rollway template cd` sends); `endpoints` maps dev and prod to endpoint names."""
    return {
        "project": project,
        "pipelineName": name,
        "kubernetesYaml": kubernetes_yaml,
        "service": service,
        "environments": {key: {"endpoint": endpoint} for key, endpoint in endpoints.items()},
        "imageSource": RUNTIME_INPUT,
        "deploymentModel": model,
        "rollback": rollback,
        "healthCheckUrl": health_check_url,
    }
