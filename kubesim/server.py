"""The HTTP transport: a threading HTTP/1.1 server with bearer-token checks, injected faults, admin routes and
chunked streaming of watches."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from kubesim.admin import PREFIX, FaultInjector, handle_admin
from kubesim.commands import CommandPolicy
from kubesim.images import ImagePolicy
from kubesim.routes import Request, Response, Router, WatchStream
from kubesim.status import ApiError, InternalError, Unauthorized
from kubesim.store import Store
from kubesim.watch import encode

LOG = logging.getLogger("kubesim")
_OPEN_PATHS = ("/healthz", "/livez", "/readyz")


class ApiServer(ThreadingHTTPServer):
    """Serves the emulated API; each connection gets a thread, so watches never block other requests."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        *,
        router: Router,
        store: Store,
        images: ImagePolicy,
        faults: FaultInjector,
        token: str | None,
        commands: CommandPolicy,
    ):
        super().__init__(address, _Handler)
        self.router = router
        self.store = store
        self.images = images
        self.faults = faults
        self.commands = commands
        self.token = token
        self.stopping = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients stall on delayed ACKs.
    disable_nagle_algorithm = True
    server: ApiServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        if self.server.stopping.is_set():
            # A stopped server answers nothing, not even on a connection kept alive from before: clients see the
            # connection drop, as they do when a real API server goes down.
            self.close_connection = True
            return
        url = urlsplit(self.path)
        request = Request(
            self.command,
            url.path,
            dict(parse_qsl(url.query, keep_blank_values=True)),
            {key.lower(): value for key, value in self.headers.items()},
            self._body(),
        )
        try:
            answer = self._answer(request)
        except ApiError as error:
            answer = Response.error(error)
        except Exception:
            LOG.exception("kubesim failed on %s %s", request.method, request.path)
            answer = Response.error(InternalError("kubesim hit an internal error"))
        if isinstance(answer, WatchStream):
            self._stream(answer)
        else:
            self._send(answer)

    def _answer(self, request: Request) -> Response | WatchStream:
        if request.path.startswith(PREFIX):
            return Response.json(
                200,
                handle_admin(
                    request.method,
                    request.path,
                    request.body,
                    self.server.images,
                    self.server.faults,
                    commands=self.server.commands,
                ),
            )
        token = self.server.token
        guarded = token is not None and request.path not in _OPEN_PATHS
        if guarded and request.headers.get("authorization", "") != f"Bearer {token}":
            raise Unauthorized("Unauthorized")
        fault = self.server.faults.take()
        if fault is not None:
            raise fault
        return self.server.router.route(request)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _stream(self, stream: WatchStream) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if stream.error is not None:
                self._chunk(encode("ERROR", stream.error))
            else:
                self._pump(stream)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if stream.subscription is not None:
                self.server.store.unwatch(stream.subscription)

    def _pump(self, stream: WatchStream) -> None:
        subscription = stream.subscription
        assert subscription is not None
        deadline = None if stream.timeout is None else time.monotonic() + stream.timeout
        delivered = 0
        if stream.bookmark_version is not None and subscription.backlog_size == 0:
            self._bookmark(stream)
        while not self.server.stopping.is_set():
            wait = 1.0 if deadline is None else min(deadline - time.monotonic(), 1.0)
            if wait <= 0:
                return
            event = subscription.next(wait)
            if event is None:
                if subscription.closed:
                    return
                continue
            delivered += 1
            kind = stream.view.translate(event)
            if kind is not None:
                self._chunk(encode(kind, stream.table(event.obj) if stream.table else event.obj))
            if stream.bookmark_version is not None and delivered == subscription.backlog_size:
                self._bookmark(stream)

    def _bookmark(self, stream: WatchStream) -> None:
        marker = {
            "kind": stream.resource.kind,
            "apiVersion": stream.resource.api_version,
            "metadata": {
                "resourceVersion": stream.bookmark_version,
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }
        self._chunk(encode("BOOKMARK", marker))

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
