"""The endpoint probe: whether an endpoint answers with its credentials, as the pre-flight rollback check and the
sweep ask it (`orchestrator/preflight.py` records the answers).

A Kubernetes endpoint is asked `GET /version` with its token (or kubeconfig credentials) and trusting its CA, built
by the code the K8S task connects with (`workers/configuration.py`, through `executors/endpoint.py`); any other
endpoint is asked a GET of its URL, except an ssh endpoint (known host keys, no host of its own), which is not
asked. The request goes through the REST tasks' HTTP client, so it keeps to the same egress policy
(`ROLLWAY_EGRESS_DENY`, see `workers/egress.py`) and the same redirect and body limits, with a short timeout of its
own. What the answer says is kept as a sentence for people: never a body, never a credential.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from orchestrator import defaults
from orchestrator.endpoints import GIT, KUBERNETES, SSH, Endpoint
from orchestrator.errors import ClusterError, EndpointError
from orchestrator.settings import DEFAULT_EGRESS_DENY, Network
from workers.egress import EgressDenied
from workers.executors.endpoint import Target, through
from workers.gitfetch import DEFAULT_BRANCH, GitUnavailable, branch_exists
from workers.http import HttpClient

# Served by every Kubernetes API server, and small; a wrong token is refused here as anywhere (401).
VERSION_PATH = "/version"
REFUSED = (401, 403)


class EndpointProber:
    """Asks endpoints whether they answer with their credentials: `prober(endpoint) -> (answered, what it said)`."""

    def __init__(
        self, deny: Sequence[Network] = DEFAULT_EGRESS_DENY, timeout: float = defaults.PROBE_TIMEOUT_SECONDS
    ) -> None:
        self.http = HttpClient(deny, timeout=timeout, deadline=timeout, body_limit=defaults.PROBE_BODY_LIMIT_BYTES)

    def __call__(self, endpoint: Endpoint) -> tuple[bool, str]:
        if endpoint.type == SSH:
            # Its known hosts are all it has: the host an SSH task logs in to is the task's, and so are its
            # credentials. A host whose key is not listed is refused when the task connects.
            return True, "not probed: an ssh endpoint holds known host keys, and its tasks name their hosts"
        if endpoint.type == GIT:
            return _git_answer(endpoint, self.http.deny)
        try:
            target = _target(endpoint)
        except (ClusterError, ssl.SSLError, ValueError) as error:
            return False, f"its credentials cannot be used: {getattr(error, 'message', None) or type(error).__name__}"
        try:
            response = self.http.request("GET", target.url, target.headers, tls=target.tls)
        except EgressDenied as error:
            return False, f"not probed: {error.message}"
        except EndpointError as error:
            return False, f"unreachable: {error.message}"
        return verdict(endpoint, response.status_code)


def _git_answer(endpoint: Endpoint, deny: Sequence[Network]) -> tuple[bool, str]:
    branch = endpoint.branch or DEFAULT_BRANCH
    try:
        found = branch_exists(endpoint, deny, timeout=defaults.PROBE_TIMEOUT_SECONDS)
    except GitUnavailable as error:
        return False, f"unreachable: {error.message}"
    return (True, f"answered (branch {branch} exists)") if found else (False, f"the repository has no branch {branch}")


def _target(endpoint: Endpoint) -> Target:
    if endpoint.type == KUBERNETES:
        return through(endpoint, VERSION_PATH)
    return Target(endpoint.url, {})


def verdict(endpoint: Endpoint, status: int) -> tuple[bool, str]:
    """What an HTTP status of a probe means: refused credentials, an answer, or an answer that is not one."""
    asked = f"GET {VERSION_PATH}" if endpoint.type == KUBERNETES else "GET of its URL"
    if status in REFUSED:
        return False, f"credentials refused (HTTP {status} to {asked})"
    if 200 <= status < 400:
        return True, f"answered (HTTP {status} to {asked})"
    return False, f"answered HTTP {status} to {asked}"
