"""How a REST or POLL task reaches a URL relative to one of its endpoints, with that endpoint's credentials.

A task names the endpoint by role (`endpoints: {kubernetesServer: NAME}`, resolved to an id when it was queued)
and writes its `url` as a path (`/api/v1/namespaces/shop/services/web:80/proxy/healthz`). The path is resolved
against the endpoint's API URL here, on the worker, and the request carries the endpoint's credentials and trusts
its CA: the credentials are read from the endpoint store when the request is sent, so they never appear in the
pipeline, the task's stored input or its output. The endpoint's client configuration is built by the same code
the K8S task uses (`workers/configuration.py`), so a kubeconfig endpoint is read the same safe way.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.endpoints import Endpoint
from orchestrator.errors import ClusterError, NotFound
from orchestrator.tasktypes import KUBERNETES_SERVER
from workers.configuration import configuration_of

EndpointLookup = Callable[[str], Endpoint]
AUTHORIZATION = "authorization"


@dataclass(frozen=True)
class Target:
    """Where a request goes: its absolute URL, the headers the endpoint adds, and the TLS trust (None: default)."""

    url: str
    headers: Mapping[str, str]
    tls: ssl.SSLContext | None = None


def is_relative(url: object) -> bool:
    """Whether a task's URL is a path on its endpoint (`/...`; `//host` would name another host)."""
    return isinstance(url, str) and url.startswith("/") and not url.startswith("//")


def target(url: str, endpoints: Mapping[str, str], lookup: EndpointLookup | None) -> Target:
    """The request of a task's `url`: an absolute URL as given, a path through the task's endpoint.

    Raises ClusterError (saying which endpoint and why, never its credentials) when the path has no usable
    endpoint: not named, gone, or with credentials that cannot be used.
    """
    if not is_relative(url):
        return Target(url, {})
    endpoint_id = endpoints.get(KUBERNETES_SERVER)
    if endpoint_id is None or lookup is None:
        raise ClusterError(
            f"url {url!r} is a path: the task needs the endpoint it is on (endpoints: {{{KUBERNETES_SERVER}: NAME}})"
        )
    try:
        return through(lookup(endpoint_id), url)
    except (ClusterError, NotFound, ssl.SSLError, ValueError) as error:
        raise ClusterError(f"the endpoint of url {url!r} cannot be used: {error}") from error


def through(endpoint: Endpoint, path: str) -> Target:
    """The request of a path on an endpoint's API, with its credentials and CA, as the K8S task connects.

    Raises ClusterError, ssl.SSLError or ValueError when its credentials cannot be used.
    """
    configuration = configuration_of(endpoint)
    ca = configuration.ca_cert_data  # PEM text, as `configuration_of` sets it
    ca_pem = ca.decode() if isinstance(ca, bytes) else ca
    tls = _trust(configuration.verify_ssl, ca_pem, configuration.cert_file, configuration.key_file)
    header = configuration.get_api_key_with_prefix("BearerToken")
    return Target(str(configuration.host).rstrip("/") + path, _authorization(header), tls)


def _authorization(header: str | None) -> dict[str, str]:
    return {AUTHORIZATION: header} if header else {}


def _trust(verify: bool, ca_pem: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """The TLS context of an endpoint: its CA (or no verification when `insecure`), and its client certificate."""
    if verify and not ca_pem and not cert_file:
        return None
    context = ssl.create_default_context(cadata=ca_pem) if verify and ca_pem else ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file and key_file:
        context.load_cert_chain(cert_file, key_file)
    return context
