"""The HTTP adapter that REST and POLL tasks call through (httpx), and the output shape of a response.

What a task may do with it is bounded here, whatever its pipeline says:

- **Where it connects.** Every connection, the first and each redirect's, goes through `GuardedBackend`: the
  host is resolved once, refused if any of its addresses lies in a network of `ROLLWAY_EGRESS_DENY`, and the
  socket is opened to exactly the addresses that were checked, so a DNS answer that changes between the check
  and the connection (rebinding) cannot slip past it. Proxy variables (`HTTP_PROXY`, ...) are not honoured:
  through a proxy, the address connected to would be the proxy's, and the check would vouch for nothing.
- **What it carries over.** Each request gets a client of its own, so no cookie one pipeline's server set is
  ever sent on behalf of another. Redirects are followed here, at most `HTTP_MAX_REDIRECTS`, and one that
  leaves the origin (scheme, host, port) drops `Authorization` and `Cookie`, as curl does.
- **How much it reads.** The body is read as a stream and reading stops at `HTTP_BODY_LIMIT_BYTES`
  (`responseTruncated: true` then says so); the whole exchange ends within `HTTP_DEADLINE_SECONDS`, checked
  between reads. The limit counts bytes after decompression, and `identity` is asked for unless the task asks
  otherwise; a server that compresses anyway can still make one read (64 KiB off the wire) inflate to a few
  tens of megabytes before the cut.
- **What it logs.** httpx logs every request's full URL at INFO, query tokens included: its loggers are set to
  WARNING, and our own messages show URLs without their query or credentials (`shown`).
"""

from __future__ import annotations

import codecs
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from orchestrator import defaults
from orchestrator.errors import EndpointError
from orchestrator.settings import DEFAULT_EGRESS_DENY, Network
from workers.egress import EgressDenied, refusal

# Headers that must not follow a redirect to another origin: they identify the caller to the first one.
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


@dataclass(frozen=True)
class HttpResponse:
    """What a task saw of an HTTP answer; `truncated` when the body was cut at the body limit."""

    status_code: int
    headers: Mapping[str, str]
    body: str
    json: Any
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def as_output(self) -> dict[str, Any]:
        """Code Stream's names for a response in a task's output, and whether the body was cut."""
        return {
            "responseCode": self.status_code,
            "responseHeaders": dict(self.headers),
            "responseBody": self.body,
            "responseJson": self.json,
            "responseTruncated": self.truncated,
        }


def shown(url: str) -> str:
    """A URL as messages and logs show it: without credentials, and without its query, which may carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "..." if parts.query else "", ""))


def quiet_transport_logs() -> None:
    """Keep httpx and httpcore below INFO: their request lines name full URLs, query secrets included."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, connecting only to addresses outside the denied networks.

    Resolution happens here, once per connection, and the socket is opened to the checked addresses themselves
    (TLS still verifies the certificate against the URL's host name, which httpcore hands to the TLS layer).
    """

    def __init__(self, deny: Sequence[Network]) -> None:
        self._deny = tuple(deny)
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port)
        refused = refusal(host, addresses, self._deny)
        if refused is not None:
            raise EgressDenied(refused)
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return self._sockets.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise EgressDenied(f"a Unix socket ({path}) is not a network address a task may reach")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (a literal IP resolves to itself)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose connections go through `GuardedBackend`."""

    def __init__(self, deny: Sequence[Network], ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=GuardedBackend(deny))


class HttpClient:
    """Sends one request and reads the answer; raises EndpointError when there is no usable answer.

    `deny` is the networks no connection may reach (`Settings.egress_deny`), `timeout` bounds each wait for
    the network, `deadline` the whole exchange, and `body_limit` how much of a body is kept.
    """

    def __init__(
        self,
        deny: Sequence[Network] = DEFAULT_EGRESS_DENY,
        timeout: float = defaults.HTTP_TIMEOUT_SECONDS,
        deadline: float = defaults.HTTP_DEADLINE_SECONDS,
        body_limit: int = defaults.HTTP_BODY_LIMIT_BYTES,
    ) -> None:
        self.deny = tuple(deny)
        self.timeout = timeout
        self.deadline = deadline
        self.body_limit = body_limit
        # Loading the CA bundle is the costly part of a client: one context serves every request's client.
        self._ssl = httpx.create_ssl_context()
        quiet_transport_logs()

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, object] | None = None,
        payload: object = None,
        tls: ssl.SSLContext | None = None,
    ) -> HttpResponse:
        """Send one request; `tls` replaces the default trust (an endpoint's own CA, or its `insecure`)."""
        sent = {str(name).lower(): str(value) for name, value in (headers or {}).items()}
        sent.setdefault("accept-encoding", "identity")
        content = _body(payload, sent)
        line = f"{method.upper()} {shown(url)}"
        try:
            with self._client(tls or self._ssl) as client:
                first = client.build_request(method.upper(), url, headers=sent, content=content)
                return self._exchange(client, first, line, time.monotonic() + self.deadline)
        except EgressDenied as error:
            raise EgressDenied(f"{line} refused: {error.message}") from error
        except httpx.TimeoutException as error:
            raise EndpointError(f"{line} timed out: {error}") from error
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
            raise EndpointError(f"{line} failed: {error or type(error).__name__}") from error

    def close(self) -> None:
        """Nothing to release: every request's client is closed when its answer has been read."""

    def _client(self, tls: ssl.SSLContext) -> httpx.Client:
        """A client for one request: its own cookie jar and connections, closed once the answer is read."""
        transport = GuardedTransport(self.deny, tls)
        return httpx.Client(transport=transport, timeout=self.timeout, follow_redirects=False, trust_env=False)

    def _exchange(self, client: httpx.Client, request: httpx.Request, line: str, deadline: float) -> HttpResponse:
        """Send `request`, following redirects ourselves so each hop's credentials are decided here."""
        for _hop in range(defaults.HTTP_MAX_REDIRECTS + 1):
            _check_deadline(deadline, line, self.deadline)
            response = client.send(request, stream=True)
            try:
                following = response.next_request
                if following is None:
                    return _read(response, self.body_limit, deadline, line, self.deadline)
            finally:
                response.close()
            request = _redirected(request, following)
        raise EndpointError(f"{line} failed: more than {defaults.HTTP_MAX_REDIRECTS} redirects")


def _redirected(previous: httpx.Request, following: httpx.Request) -> httpx.Request:
    """The request a redirect asks for (httpx builds it), without credentials if it leaves the origin."""
    before, after = previous.url, following.url
    if (before.scheme, before.host, before.port) != (after.scheme, after.host, after.port):
        for name in CREDENTIAL_HEADERS:
            following.headers.pop(name, None)
    return following


def _check_deadline(deadline: float, line: str, seconds: float) -> None:
    if time.monotonic() > deadline:
        raise EndpointError(f"{line} timed out: no complete answer within {seconds:g}s")


def _read(response: httpx.Response, limit: int, deadline: float, line: str, seconds: float) -> HttpResponse:
    """The answer, its body read up to `limit` bytes: the rest is never read, so memory stays within the limit."""
    kept = bytearray()
    truncated = False
    for chunk in response.iter_bytes():
        room = limit - len(kept)
        kept += chunk[:room]
        if len(chunk) > room:
            truncated = True
            break
        _check_deadline(deadline, line, seconds)
    body = _text(bytes(kept), response.charset_encoding, complete=not truncated)
    try:
        parsed = json.loads(body) if body.strip() and not truncated else None
    except ValueError:
        parsed = None
    return HttpResponse(response.status_code, dict(response.headers), body, parsed, truncated)


def _text(data: bytes, encoding: str | None, complete: bool) -> str:
    """The body as text in its declared charset (UTF-8 when none or an unknown one), a cut last character dropped."""
    try:
        decoder = codecs.getincrementaldecoder(encoding or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=complete)


def _body(payload: object, headers: dict[str, str]) -> bytes | None:
    if payload is None or payload == "":
        return None
    if isinstance(payload, str):
        return payload.encode()
    headers.setdefault("content-type", "application/json")
    return json.dumps(payload).encode()
