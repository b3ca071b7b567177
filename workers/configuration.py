"""The official client's `Configuration` of an endpoint: its URL with a token and CA data, or its kubeconfig.

A kubeconfig is read by Rollway (`orchestrator/kubeconfig.py`), never by the client's own loader, which would run
its `exec` and `auth-provider` plugins and read the files it names on this worker. The reading refuses those fields
again here, since an endpoint may have been stored before the API checked them, or written straight into the
database. No file is read; the only files are the ones this module writes itself (a client certificate and key,
which urllib3 only takes as paths).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import ssl
import tempfile
import weakref

import urllib3
from kubernetes.client import Configuration

from orchestrator.endpoints import Endpoint
from orchestrator.errors import BadRequest, ClusterError
from orchestrator.kubeconfig import TOKEN_TEXT, Access, read_access, unsendable


def configuration_of(endpoint: Endpoint) -> Configuration:
    """The client configuration of an endpoint; ClusterError saying why when its credentials cannot be used."""
    return _from_kubeconfig(endpoint) if endpoint.kubeconfig else _from_url(endpoint)


def _from_url(endpoint: Endpoint) -> Configuration:
    if not endpoint.url:
        raise ClusterError(f"endpoint {endpoint.name} has neither a URL nor a kubeconfig")
    configuration = Configuration(host=endpoint.url.rstrip("/"))
    if endpoint.token:
        _bearer(configuration, endpoint.token, endpoint.name)
    configuration.verify_ssl = not endpoint.insecure
    if endpoint.ca_data and not endpoint.insecure:
        configuration.ca_cert_data = _pem(endpoint.ca_data, endpoint.name)
    return configuration


def _pem(ca_data: str, endpoint: str) -> str:
    """CA certificates as PEM text, from base64 PEM (kubeconfig's certificate-authority-data) or PEM itself.

    Handed to urllib3 as data: no CA file is written.
    """
    text = ca_data.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ClusterError(f"the CA data of endpoint {endpoint} is neither base64 PEM nor PEM") from error
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ClusterError(f"the CA data of endpoint {endpoint} holds no PEM certificate")
    return text


def _from_kubeconfig(endpoint: Endpoint) -> Configuration:
    """The configuration of the kubeconfig's current context, built field by field from inline data."""
    try:
        access = read_access(endpoint.kubeconfig or "")
    except BadRequest as refused:
        # The problems name fields, never their values: nothing of the document (or of a file) reaches the task.
        said = "; ".join(str(problem) for problem in refused.details) or refused.message
        raise ClusterError(f"the kubeconfig of endpoint {endpoint.name} cannot be used: {said}") from refused
    configuration = Configuration(host=access.server)
    _authenticate(configuration, access, endpoint.name)
    configuration.verify_ssl = not access.insecure
    if access.ca_pem and not access.insecure:
        configuration.ca_cert_data = access.ca_pem
    if access.tls_server_name:
        configuration.tls_server_name = access.tls_server_name
    if access.proxy_url:
        configuration.proxy = access.proxy_url
    if access.client_certificate and access.client_key:
        _client_certificate(configuration, access.client_certificate, access.client_key, endpoint.name)
    return configuration


def _authenticate(configuration: Configuration, access: Access, endpoint: str) -> None:
    """A token wins over basic auth, as in kubectl and the client's own loader."""
    if access.token:
        _bearer(configuration, access.token, endpoint)
    elif access.username is not None and access.password is not None:
        header = urllib3.util.make_headers(basic_auth=f"{access.username}:{access.password}")["authorization"]
        configuration.api_key = {"BearerToken": header}  # the client sends this key as the Authorization header


def _bearer(configuration: Configuration, token: str, endpoint: str) -> None:
    if unsendable(token):  # stored before the API checked it: said without quoting it
        raise ClusterError(f"the token of endpoint {endpoint} {TOKEN_TEXT}")
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}


def _client_certificate(configuration: Configuration, certificate: bytes, key: bytes, endpoint: str) -> None:
    """Hand urllib3 the client certificate and key as files: it loads them by path on every new connection.

    The files are ours alone: a fresh folder only this user may enter, files only this user may read, removed
    when the configuration (held by its client) is gone, or at exit.
    """
    folder = tempfile.mkdtemp(prefix="rollway-client-cert-")
    weakref.finalize(configuration, shutil.rmtree, folder, ignore_errors=True)
    cert_file, key_file = _private_file(folder, "client.crt", certificate), _private_file(folder, "client.key", key)
    try:
        ssl.create_default_context().load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as error:  # said now, not as a TLS failure on every request
        raise ClusterError(f"the client certificate and key of endpoint {endpoint} do not make a key pair") from error
    configuration.cert_file, configuration.key_file = cert_file, key_file


def _private_file(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return path
