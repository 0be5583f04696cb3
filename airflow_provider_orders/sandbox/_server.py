"""The HTTP machinery both sandboxes share: a threaded stdlib server on 127.0.0.1, a request log,
fault injection and the ``/_sandbox/...`` admin routes.

A sandbox subclass only says how a request maps to a route (:meth:`SandboxServer._route`) and adds its
own admin routes and state reset; everything about recording, faulting and answering lives here.

Fault semantics (per route, first in first out, each fault used for its next ``times`` requests):

* ``status`` / ``body`` / ``headers``: the request is **not** executed; that answer is sent instead.
* ``drop=True``: the request is **not** executed; the connection is closed with no answer.
* ``delay=s``: the server waits ``s`` seconds, then handles the request (a slow server). Combined with
  ``status`` or ``drop``, the fault answer (or the drop) comes after the delay.
* ``apply=True``: the request **is** executed (the order is created, the order accepted) and *then*
  the fault answer replaces the real one, or the connection is dropped, or the real answer is sent
  after ``delay``: the "answer lost after the server acted" case.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

#: Prefix of the admin routes; requests under it are never logged or faulted.
ADMIN_PREFIX = "/_sandbox/"
#: Route name that matches every API route of a sandbox in :meth:`SandboxServer.inject_fault`.
ANY_ROUTE = "*"


@dataclass
class Request:
    """An incoming request, parsed once.

    ``segments`` are the path segments split on ``/`` *before* percent-decoding, then each decoded: a
    kitchen named ``my kitchen/x`` sent as ``my%20kitchen%2Fx`` is one segment ``"my kitchen/x"``.
    Header names are lower-cased.
    """

    method: str
    target: str
    path: str
    segments: list[str]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        return json.loads(self.body.decode("utf-8"))

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object: ``{}`` when empty, None when it is not a JSON object."""
        if not self.body.strip():
            return {}
        try:
            payload = self.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


@dataclass
class Response:
    """An answer to send."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode("utf-8"), "application/json", dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Response:
        return cls(status, text.encode("utf-8"), content_type)


@dataclass
class Route:
    """What a sandbox says about one request: its route name(s) and how to answer it.

    :param name: the route's name (``"create_order"``, ``"acceptOrder"``...), None for an unknown path.
    :param aliases: every name a fault may target for this request (``name`` included).
    :param handler: computes the real answer (executes the request).
    :param log: False for requests that are not API calls (web pages): not logged, never faulted.
    """

    name: str | None
    aliases: tuple[str, ...]
    handler: Callable[[], Response]
    operation_name: str | None = None
    root_field: str | None = None
    log: bool = True


@dataclass
class RecordedRequest:
    """One API request as the sandbox saw it (admin routes are never recorded).

    :param route: the route name (DataKitchen: ``"create_order"``...; ezCater: the operation's root field,
        e.g. ``"acceptOrder"``, or ``"graphql"`` when it has none or several); None for an unknown path.
    :param routes: every name :meth:`SandboxServer.count` matches for this request
        (ezCater: ``"graphql"`` plus the root field names).
    :param status: the HTTP status sent; None when the connection was dropped without an answer.
    :param headers: request headers, names lower-cased.
    :param body: request body decoded as UTF-8.
    :param fault: what fault was applied (``"status 429"``, ``"drop"``, ``"delay 0.5s"``, with
        ``" after applying"`` when the request was executed first); None for a normal answer.
    :param executed: whether the request was executed (False when a fault answered in its place).
    """

    method: str
    path: str
    route: str | None
    routes: tuple[str, ...]
    headers: dict[str, str]
    body: str
    query: dict[str, list[str]]
    time: float
    status: int | None = None
    operation_name: str | None = None
    root_field: str | None = None
    fault: str | None = None
    executed: bool = False

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "routes": list(self.routes),
            "status": self.status,
            "headers": self.headers,
            "body": self.body,
            "query": self.query,
            "time": self.time,
            "operation_name": self.operation_name,
            "root_field": self.root_field,
            "fault": self.fault,
            "executed": self.executed,
        }


@dataclass
class Fault:
    """A fault armed for the next ``times`` requests to ``route`` (see the module docstring)."""

    route: str
    times: int = 1
    status: int | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    drop: bool = False
    delay: float = 0.0
    apply: bool = False

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ValueError(f"fault for route {self.route!r}: times must be at least 1, got {self.times}")
        if self.delay < 0:
            raise ValueError(f"fault for route {self.route!r}: delay must not be negative")
        if self.status is None and not self.drop and not self.delay:
            raise ValueError(
                f"fault for route {self.route!r} does nothing: give a status, drop=True or a delay"
            )
        if self.status is not None and self.drop:
            raise ValueError(f"fault for route {self.route!r}: give either a status or drop=True, not both")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault for route {self.route!r}: {self.status} is not an HTTP status")

    @property
    def replaces_answer(self) -> bool:
        return self.drop or self.status is not None

    def describe(self) -> str:
        parts = []
        if self.delay:
            parts.append(f"delay {self.delay:g}s")
        if self.drop:
            parts.append("drop")
        if self.status is not None:
            parts.append(f"status {self.status}")
        text = ", ".join(parts)
        return f"{text} after applying" if self.apply else text

    def response(self) -> Response:
        assert self.status is not None
        headers = dict(self.headers or {})
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if isinstance(self.body, (dict, list)):
            body = json.dumps(self.body).encode("utf-8")
            content_type = content_type or "application/json"
        elif isinstance(self.body, bytes):
            body = self.body
        elif self.body is None:
            phrase = _reason(self.status)
            body = f"{self.status} {phrase} (fault injected by the sandbox)".encode()
        else:
            body = str(self.body).encode("utf-8")
        return Response(self.status, body, content_type or "text/plain; charset=utf-8", headers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "times": self.times,
            "status": self.status,
            "body": self.body if not isinstance(self.body, bytes) else self.body.decode("utf-8", "replace"),
            "headers": self.headers,
            "drop": self.drop,
            "delay": self.delay,
            "apply": self.apply,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError('a fault must be a JSON object such as {"route": "login", "status": 503}')
        unknown = set(data) - {"route", "times", "status", "body", "headers", "drop", "delay", "apply"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if not isinstance(data.get("route"), str):
            raise ValueError('a fault needs a "route" (a string)')
        return cls(
            route=data["route"],
            times=int(data.get("times", 1)),
            status=None if data.get("status") is None else int(data["status"]),
            body=data.get("body"),
            headers=data.get("headers"),
            drop=bool(data.get("drop", False)),
            delay=float(data.get("delay") or 0.0),
            apply=bool(data.get("apply", False)),
        )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class AdminError(Exception):
    """An admin request that cannot be honoured: answered 400 with ``{"error": message}``."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The stdlib default backlog of 5 stalls clients that open many connections at once (1,000
    # deferred order waits in one triggerer, each poll a new HTTP/1.0 connection).
    request_queue_size = 1024
    sandbox: SandboxServer


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a stopped sandbox never answers on a kept-alive socket
    # and a dropped connection always belongs to the request it was meant to fail.
    protocol_version = "HTTP/1.0"
    server_version = "orders-sandbox"
    sys_version = ""
    timeout = 60
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.sandbox._dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.verbose:
            sys.stderr.write(f"[{self.server.sandbox.service}] {format % args}\n")

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)


class SandboxServer:
    """Base of both sandboxes: lifecycle, request log, faults and the shared admin routes."""

    #: Short service name used in admin answers and access log lines.
    service: ClassVar[str] = "sandbox"
    #: Route names faults may target (besides :data:`ANY_ROUTE`).
    route_names: ClassVar[frozenset[str]] = frozenset()
    #: Path of the API below :attr:`url` that clients are configured with ("" or "/graphql").
    api_path: ClassVar[str] = ""

    def __init__(self, port: int = 0, *, verbose: bool = False) -> None:
        self._requested_port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> SandboxServer:
        """Bind 127.0.0.1 (port 0 picks a free port) and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError(f"the {self.service} sandbox is already running at {self.url}")
        httpd = _HTTPServer(("127.0.0.1", self._requested_port), _Handler)
        httpd.sandbox = self
        self._stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.service}-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"the {self.service} sandbox is not running: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server root; the admin routes live below it)."""
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- request log
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the request log, oldest first (admin routes are not in it)."""
        with self._lock:
            return list(self._log)

    def count(self, route: str | None = None, method: str | None = None) -> int:
        """How many logged requests match ``route`` (any of a request's route names) and ``method``."""
        with self._lock:
            return sum(1 for r in self._log if _matches(r, route, method))

    def clear_requests(self) -> int:
        """Empty the request log; returns how many entries it held."""
        with self._lock:
            n = len(self._log)
            self._log.clear()
            return n

    # ---------------------------------------------------------------- faults
    def inject_fault(
        self,
        route: str,
        *,
        times: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        drop: bool = False,
        delay: float = 0.0,
        apply: bool = False,
    ) -> Fault:
        """Arm a fault for the next ``times`` requests to ``route`` (see the module docstring).

        ``body`` may be a dict/list (sent as JSON), a str or bytes; without one a short text names the
        status. ``route`` is one of :attr:`route_names` or ``"*"`` for any route.
        """
        return self.add_fault(
            Fault(
                route=route,
                times=times,
                status=status,
                body=body,
                headers=headers,
                drop=drop,
                delay=delay,
                apply=apply,
            )
        )

    def add_fault(self, fault: Fault) -> Fault:
        """Arm an already built :class:`Fault`."""
        self._check_route(fault.route)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _check_route(self, route: str) -> None:
        if route != ANY_ROUTE and route not in self.route_names:
            known = ", ".join(sorted(self.route_names))
            raise ValueError(f"unknown {self.service} route {route!r}; known routes: {known}, or '*'")

    @property
    def faults(self) -> list[Fault]:
        """Faults still armed (their ``times`` counts down as they are used)."""
        with self._lock:
            return list(self._faults)

    def clear_faults(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    def _take_fault(self, aliases: Iterable[str]) -> Fault | None:
        names = set(aliases)
        with self._lock:
            for fault in self._faults:
                if fault.route == ANY_ROUTE or fault.route in names:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Back to a fresh sandbox: request log and faults emptied, API state reset."""
        self.clear_requests()
        self.clear_faults()
        self._reset_state()

    # ---------------------------------------------------------------- subclass hooks
    def _route(self, request: Request) -> Route:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_state(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _admin_orders(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _admin(self, request: Request, name: str) -> Response | None:
        """Sandbox-specific admin routes; None when ``name`` is not one of them."""
        return None

    # ---------------------------------------------------------------- dispatch
    def _dispatch(self, handler: _Handler) -> None:
        try:
            request = _parse(handler)
        except (ValueError, OSError) as exc:
            self._send(handler, Response.json(400, {"error": f"unreadable request: {exc}"}))
            return
        try:
            if request.path.startswith(ADMIN_PREFIX):
                self._send(handler, self._dispatch_admin(request))
                return
            route = self._route(request)
        except Exception as exc:
            self._send(handler, self._internal_error(exc))
            return
        if not route.log:
            self._send(handler, self._run(route))
            return

        entry = RecordedRequest(
            method=request.method,
            path=request.target,
            route=route.name,
            routes=route.aliases,
            headers=request.headers,
            body=request.text,
            query=request.query,
            time=time.time(),
            operation_name=route.operation_name,
            root_field=route.root_field,
        )
        fault = self._take_fault(route.aliases)
        with self._lock:
            self._log.append(entry)
        if fault is None:
            entry.executed = True
            self._send(handler, self._run(route), entry)
            return

        entry.fault = fault.describe()
        if fault.delay and not fault.apply and self._stopping.wait(fault.delay):
            return  # the sandbox is stopping: give up on the request
        real: Response | None = None
        if fault.apply or not fault.replaces_answer:
            entry.executed = True
            real = self._run(route)
        if fault.delay and fault.apply and self._stopping.wait(fault.delay):
            return
        if fault.drop:
            handler.close_connection = True  # nothing written: the client sees the connection close
            return
        answer = fault.response() if fault.status is not None else real
        assert answer is not None
        self._send(handler, answer, entry)

    def _run(self, route: Route) -> Response:
        try:
            return route.handler()
        except Exception as exc:
            return self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> Response:
        traceback.print_exception(exc, file=sys.stderr)
        return Response.json(500, {"error": f"sandbox internal error: {exc!r}"})

    def _send(self, handler: _Handler, response: Response, entry: RecordedRequest | None = None) -> None:
        if entry is not None:
            entry.status = response.status  # set before the client can read the answer
        try:
            handler.send(response)
        except OSError:  # the client went away (e.g. it timed out during a delay)
            handler.close_connection = True

    # ---------------------------------------------------------------- admin routes
    def _dispatch_admin(self, request: Request) -> Response:
        name = request.path[len(ADMIN_PREFIX) :].strip("/")
        method = request.method
        try:
            if name == "health" and method == "GET":
                return Response.json(200, {"service": self.service, "url": self.url + self.api_path})
            if name == "requests" and method == "GET":
                route = request.param("route")
                verb = request.param("method")
                entries = [r.to_dict() for r in self.requests if _matches(r, route, verb)]
                return Response.json(200, {"count": len(entries), "requests": entries})
            if name == "requests" and method == "DELETE":
                return Response.json(200, {"cleared": self.clear_requests()})
            if name == "faults" and method == "GET":
                return Response.json(200, {"faults": [f.to_dict() for f in self.faults]})
            if name == "faults" and method == "POST":
                payload = _admin_json(request)
                specs = payload if isinstance(payload, list) else [payload]
                try:
                    faults = [Fault.from_dict(spec) for spec in specs]
                    for fault in faults:
                        self._check_route(fault.route)
                except (TypeError, ValueError) as exc:
                    raise AdminError(str(exc)) from exc
                for fault in faults:
                    self.add_fault(fault)
                return Response.json(201, {"faults": [f.to_dict() for f in faults]})
            if name == "faults" and method == "DELETE":
                return Response.json(200, {"cleared": self.clear_faults()})
            if name == "reset" and method == "POST":
                self.reset()
                return Response.json(200, {"reset": True})
            if name == "orders" and method == "GET":
                return Response.json(200, {"orders": self._admin_orders()})
            answer = self._admin(request, name)
        except AdminError as exc:
            return Response.json(400, {"error": str(exc)})
        if answer is None:
            return Response.json(404, {"error": f"no sandbox admin route {method} {ADMIN_PREFIX}{name}"})
        return answer


def admin_object(request: Request) -> dict[str, Any]:
    """An admin request's body, which must be a JSON object (AdminError otherwise)."""
    payload = request.json_object()
    if payload is None:
        raise AdminError("send a JSON object as the body")
    return payload


def _admin_json(request: Request) -> Any:
    if not request.body.strip():
        return {}
    try:
        return request.json()
    except ValueError as exc:
        raise AdminError(f"the body is not JSON: {exc}") from exc


def _matches(entry: RecordedRequest, route: str | None, method: str | None) -> bool:
    if route is not None and route not in entry.routes:
        return False
    return method is None or entry.method == method.upper()


def _parse(handler: _Handler) -> Request:
    target = handler.path
    parts = urlsplit(target)
    raw_segments = [s for s in parts.path.split("/") if s]
    return Request(
        method=handler.command.upper(),
        target=target,
        path=unquote(parts.path),
        segments=[unquote(s) for s in raw_segments],
        query=parse_qs(parts.query),
        headers={k.lower(): v for k, v in handler.headers.items()},
        body=handler.read_body(),
    )


__all__ = [
    "ADMIN_PREFIX",
    "ANY_ROUTE",
    "AdminError",
    "Fault",
    "RecordedRequest",
    "Request",
    "Response",
    "Route",
    "SandboxServer",
    "admin_object",
]
