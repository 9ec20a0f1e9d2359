"""The request guard: what the service decides from a request's headers, before it reads a byte of its body.

An ASGI middleware in front of every route. From the headers alone it refuses a request
with no valid token for the API (401), a non-admin on admin routes that take bodies
(403), a submitter over its rate and a client trying too many tokens at /login (429),
and a declared length over the limit (413). Then it lets the body through a meter: past
the limit it stops (413, even when no length was declared or the length lied), and a
sender that stalls, or trickles slower than ``body_min_rate`` once ``body_grace_seconds``
are over, is cut off (408). Refusals close the connection, so nothing more is read.

Limits by route, never by what the sender says its body is: the routes that take files
(multipart forms to UPLOAD_ROUTES, signed PUTs) may take up to their file's limit; every other
route, whatever its Content-Type or framing, ``max_request_bytes``. A route that answers before
it has read the whole body has its connection closed, so the rest is never read either.
"""
from __future__ import annotations

import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from restyle.config import Settings
from restyle.service.context import Context, Principal
from restyle.service.jobs_api import COOKIE
from restyle.service.limits import RateLimiter

COUNTED = "restyle.submission_counted"  # scope key: the guard spent a rate token for this request (jobs_api.submitter reads it)
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields beside the video

# Routes that make a job: rate-limited per token before their body is read.
SUBMISSIONS = {("POST", "/api/jobs"), ("POST", "/api/uploads"), ("POST", "/submit")}
# Admin-only routes that take a body: a submitter's body is never read.
ADMIN_BODIES = {("POST", "/api/events"), ("POST", "/api/models")}
# Routes that take files, as multipart forms: only these get an upload's limit (issue 21: a multipart
# body to any other route, /login say, was allowed a video's size and spilled to a temp file).
UPLOAD_ROUTES = {("POST", "/api/jobs"), ("POST", "/submit"), ("POST", "/api/models"), ("POST", "/api/pictures")}


class BodyRefused(Exception):
    """The request body broke a limit while it streamed; the guard answers for the route."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def principal_of(context: Context, headers: Headers) -> Principal | None:
    """Who the bearer token (or the dashboard's cookie) stands for; None without a known one."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    else:
        token = _cookie(headers.get("cookie", ""), COOKIE)
    return context.tokens.get(token) if token else None


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return ""


def refusal(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A refusal that also ends the connection: the body that may follow is never read."""
    return JSONResponse({"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"})


class Guard:
    """The ASGI middleware; ``app.add_middleware(Guard, context=...)``."""

    def __init__(self, app: ASGIApp, context: Context, router: Router | None = None):
        self.app, self.context, self.router = app, context, router
        settings = context.settings
        self.logins = RateLimiter(settings.login_rate_per_minute, settings.login_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        early, limit = self.decide(scope, headers)
        if early is not None:
            await early(scope, receive, send)
            return
        settings = self.context.settings
        meter = BodyMeter(receive, limit, settings.body_idle_seconds, settings.body_grace_seconds, settings.body_min_rate)
        method, path = scope["method"], scope["path"]
        meter.done = not _has_body(headers)  # nothing to read, nothing to close the connection over
        meter.setting = _limit_setting((method, path.rstrip("/") or "/"), method, _is_upload(method, path, headers))
        answered = {"app": False, "guard": False}

        async def answer(response: JSONResponse) -> None:
            answered["guard"] = True
            await response(scope, receive, send)

        async def guarded_send(message: Message) -> None:
            if answered["guard"]:
                return  # the app's own answer to a refused body (a 400 for an unreadable form, say) is dropped
            if meter.refused is not None and not answered["app"]:
                await answer(refusal(meter.refused.status, meter.refused.detail))
                return
            if message["type"] == "http.response.start":
                answered["app"] = True
                if not meter.done:  # answered before the body was all read: close, never drain the rest
                    message = {**message, "headers": _closing(message.get("headers", []))}
                if message["status"] == 405 and self.router is not None:
                    message = {**message, "headers": _allow(message["headers"], self.router, scope)}
            await send(message)

        try:
            await self.app(scope, meter.receive, guarded_send)
        except BodyRefused:
            pass
        if meter.refused is not None and not answered["app"] and not answered["guard"]:
            await answer(refusal(meter.refused.status, meter.refused.detail))

    def decide(self, scope: Scope, headers: Headers) -> tuple[JSONResponse | None, int]:
        """(a refusal or None, the body limit): everything that the headers alone can settle."""
        settings = self.context.settings
        method, path = scope["method"], scope["path"]
        route = (method, path.rstrip("/") or "/")
        upload = _is_upload(method, path, headers)
        limit = _body_limit(settings, route, method, upload)

        if route == ("POST", "/login"):
            wait = self.logins.take(_client(scope))
            if wait:
                return refusal(429, f"too many sign-in attempts; try again in {self.logins.retry_after(wait)} s",
                               {"Retry-After": self.logins.retry_after(wait)}), limit
        who = None
        if path.startswith("/api/") or route in SUBMISSIONS:
            who = principal_of(self.context, headers)
            if who is None:
                return refusal(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}), limit
            if route in ADMIN_BODIES and not who.is_admin:
                return refusal(403, "this route is for admins"), limit
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return refusal(400, "Content-Length must be a number of bytes"), limit
            if int(declared) > limit:
                return refusal(413, f"the request body is over the limit of {limit} bytes ({_limit_setting(route, method, upload)})"), limit
        if who is not None and route in SUBMISSIONS:  # last: a request refused for its size costs no submission
            wait = self.context.submissions.take(who.name)
            if wait:
                after = self.context.submissions.retry_after(wait)
                return refusal(429, f"too many submissions from {who.name}; try again in {after} s", {"Retry-After": after}), limit
            scope[COUNTED] = True
        return None, limit


def _closing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with ``Connection: close``: uvicorn then closes the connection after the answer."""
    return [(k, v) for k, v in headers if k.lower() != b"connection"] + [(b"connection", b"close")]


def _allow(headers: list[tuple[bytes, bytes]], router: Router, scope: Scope) -> list[tuple[bytes, bytes]]:
    """A 405's Allow header with every method of every route at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in router.routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    if not methods:
        return headers
    return [(k, v) for k, v in headers if k.lower() != b"allow"] + [(b"allow", ", ".join(sorted(methods)).encode())]


def _body_limit(settings, route: tuple[str, str], method: str, upload: bool) -> int:
    """The most a request's body may hold, by what it may carry: a video (and a style picture), a model, a picture."""
    if not upload:
        return settings.max_request_bytes
    if method != "POST":
        return settings.max_upload_bytes  # a signed PUT: the video alone
    if route == ("POST", "/api/models"):
        return settings.max_model_bytes + FORM_OVERHEAD
    if route == ("POST", "/api/pictures"):
        return settings.max_picture_bytes + FORM_OVERHEAD
    if route in SUBMISSIONS:
        return settings.max_upload_bytes + settings.max_picture_bytes + FORM_OVERHEAD  # a video and its painting
    return settings.max_upload_bytes + FORM_OVERHEAD


def _limit_setting(route: tuple[str, str], method: str, upload: bool) -> str:
    """The setting(s) behind :func:`_body_limit`, named in its refusals."""
    if not upload:
        return "RESTYLE_MAX_REQUEST_BYTES"
    if route == ("POST", "/api/models"):
        return "RESTYLE_MAX_MODEL_BYTES"
    if route == ("POST", "/api/pictures"):
        return "RESTYLE_MAX_PICTURE_BYTES"
    if method == "POST" and route in SUBMISSIONS:
        return "RESTYLE_MAX_UPLOAD_BYTES + RESTYLE_MAX_PICTURE_BYTES"
    return "RESTYLE_MAX_UPLOAD_BYTES"


def _is_upload(method: str, path: str, headers: Headers) -> bool:
    """A request that may carry a file: a signed PUT, or a multipart form to a route that takes files."""
    if method == "PUT" and path.startswith("/files/"):
        return True
    return ((method, path.rstrip("/") or "/") in UPLOAD_ROUTES
            and headers.get("content-type", "").lower().startswith("multipart/form-data"))


def _has_body(headers: Headers) -> bool:
    """Whether a body follows the headers (HTTP/1.1: a non-zero Content-Length, or chunked)."""
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class BodyMeter:
    """Wraps ``receive``: counts the body against its limit and holds the sender to a pace."""

    def __init__(self, receive: Receive, limit: int, idle_s: float, grace_s: float, min_rate: int):
        self._receive, self.limit = receive, limit
        self.setting = "RESTYLE_MAX_REQUEST_BYTES"  # what a person changes to allow more
        self.idle_s, self.grace_s, self.min_rate = idle_s, grace_s, min_rate
        self.received = 0
        self.started: float | None = None
        self.done = False
        self.refused: BodyRefused | None = None

    async def receive(self) -> Message:
        if self.refused is not None:
            raise self.refused
        if self.done:  # the body is in; the app may wait for a disconnect as long as it likes
            return await self._receive()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.started is None:
            self.started = now
        wait = self.idle_s
        if self.min_rate > 0:  # the time allowed grows with every byte that came
            deadline = self.started + self.grace_s + self.received / self.min_rate
            wait = min(wait, max(0.0, deadline - now))
        try:
            message = await asyncio.wait_for(self._receive(), timeout=max(wait, 0.001))
        except TimeoutError:
            raise self._refuse(408, f"the request body came too slowly ({self.received} bytes in "
                                    f"{loop.time() - self.started:.0f} s); send it at least {self.min_rate} bytes/s") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise self._refuse(413, f"the request body is over the limit of {self.limit} bytes ({self.setting})")
            self.done = not message.get("more_body", False)
        else:
            self.done = True
        return message

    def _refuse(self, status: int, detail: str) -> BodyRefused:
        self.refused = BodyRefused(status, detail)
        return self.refused


def longest_body_s(settings: Settings) -> float:
    """The longest a video upload can take and still keep to the guard's pace."""
    if settings.body_min_rate <= 0:
        return 24 * 3600.0
    return settings.body_grace_seconds + settings.max_upload_bytes / settings.body_min_rate + settings.body_idle_seconds


async def spool_body(request: Request, folder: Path, block: int = 1024 * 1024) -> Path:
    """The request's body in a file in ``folder`` (the caller removes it), written a block at a time from a thread:
    memory stays flat and the event loop keeps serving while a large upload comes in."""
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix="upload-", delete=False)  # noqa: SIM115 - closed below
    path = Path(handle.name)
    try:
        pending = bytearray()
        async for piece in request.stream():
            pending += piece
            if len(pending) >= block:
                await anyio.to_thread.run_sync(handle.write, bytes(pending))
                pending.clear()
        if pending:
            await anyio.to_thread.run_sync(handle.write, bytes(pending))
        await anyio.to_thread.run_sync(handle.close)
    except BaseException:
        handle.close()
        path.unlink(missing_ok=True)
        raise
    return path


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, safe for any input: a NaN or Infinity that came in is echoed as a string, not a 500."""
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors(), custom_encoder={bytes: repr}))}, status_code=422)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(json.dumps(value, default=str))


# What any API route may answer besides its own success: the guard's refusals and the routes' own.
ERRORS = {400: "unreadable request", 401: "no valid bearer token", 403: "not allowed to this token",
          404: "no such job or object (or not yours)", 408: "the body came too slowly", 409: "not in a state for this",
          413: "the body is over its limit", 422: "invalid parameters", 429: "over the rate; see Retry-After",
          503: "a store is unreachable; try again"}


def install(app: FastAPI, context: Context) -> None:
    """Put the guard in front of every route, make validation errors safe to render, and document both."""
    app.add_middleware(Guard, context=context, router=app.router)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document as the service really answers: bearer auth, and every refusal with its shape."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = {"type": "object", "title": "Problem", "required": ["detail"],
                          "properties": {"detail": {"title": "Detail", "anyOf": [
                              {"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}]}}}
    schemas.setdefault("ValidationError", {"type": "object", "title": "ValidationError"})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if path.startswith("/api/"):
                operation["security"] = [{"bearer": []}]
            for status, what in ERRORS.items():
                operation["responses"][str(status)] = {"description": what, "content": problem}
    return schema

