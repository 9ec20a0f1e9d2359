"""The request guard: what the service decides from a request's headers, before it reads a byte of its body.

An ASGI middleware in front of every route. It adds the security headers to every answer and
refuses a form sent from another site's page (:mod:`.browsers`), resolves the caller once (the
bearer token or the dashboard's session, into ``scope[auth.PRINCIPAL]``), then, from the headers alone and the
route's entry in the policy table (:mod:`.policy`), refuses a request with no valid token where
one is needed (401), a non-admin on admin routes (403), a submitter over its rate and a client
trying too many tokens at /login (429), and a declared length over the limit (413). Then it lets
the body through a meter: past the limit it stops (413), and a sender that stalls, or trickles
slower than ``body_min_rate`` once ``body_grace_seconds`` are over, is cut off (408). Refusals
close the connection, so nothing more is read.

Limits by route, never by what the sender says its body is: a route whose policy takes files may
take up to its files' limit in a body that carries them (a multipart form, or a signed PUT's
body); any other body, whatever its Content-Type, ``max_request_bytes``.

**Chunked bodies** (no Content-Length) are allowed on every route that takes a body: the meter
bounds them as they come, and answers 413 as soon as one passes its route's limit, so a length
declared up front is never needed (a declared one over the limit is refused before the body; one
that is not a number is 400). A route that answers before it has read the whole body has its
connection closed, so the rest is never read either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from restyle.config import Settings
from restyle.errors import JobStoreError, StoreError
from restyle.service.context import Context
from restyle.service.http import browsers, frame
from restyle.service.http.auth import COUNTED, PRINCIPAL, principal_of
from restyle.service.http.policy import Access, Policy, policy_for
from restyle.service.limits import OverQuota, RateLimiter

log = logging.getLogger("restyle")
UNAVAILABLE = "service unavailable: a store is unreachable; try again"  # fixed: the failure's own text names folders


class BodyRefused(Exception):
    """The request body broke a limit while it streamed; the guard answers for the route."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


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
        send = browsers.with_headers(send, scope, self.context.settings)  # every answer, refusals too
        headers = Headers(scope=scope)
        policy = policy_for(scope["method"], scope["path"])
        files = policy.carries_files(headers.get("content-type", ""))
        early = self.decide(scope, headers, policy, files)
        if early is not None:
            await frame.refusal_page(scope, early)(scope, receive, send)
            return
        who = scope.get(PRINCIPAL)
        if not policy.quota or who is None or who.is_admin:
            await self.metered(scope, receive, send, headers, policy, files)
            return
        quotas = self.context.quotas
        declared = int(headers.get("content-length") or 0) if files else 0  # a number: decide() saw to it
        try:  # in a thread: counting may list the tenant's folders
            held = await anyio.to_thread.run_sync(quotas.hold, who.name, policy.quota, declared)
        except OverQuota as exc:
            await frame.refusal_page(scope, refusal(exc.status, exc.detail))(scope, receive, send)
            return
        except (StoreError, JobStoreError):  # counting lists the stores: one that fails is a 503, never a 500
            log.exception("a store failed while %s's usage was counted", who.name)
            await frame.refusal_page(scope, refusal(503, UNAVAILABLE))(scope, receive, send)
            return
        try:
            room = quotas.remaining_bytes(who.name) if files and "bytes" in policy.quota and not declared else None
            await self.metered(scope, receive, send, headers, policy, files, room)
        finally:
            quotas.release(who.name, held)

    async def metered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        policy: Policy,
        files: bool,
        room: int | None = None,
    ) -> None:
        """The route, its body let through the meter (``room``: the bytes a body of no declared length may still
        hold under its sender's quota)."""
        settings = self.context.settings
        meter = BodyMeter(
            receive,
            policy.body_limit(settings, files),
            settings.body_idle_seconds,
            settings.body_grace_seconds,
            settings.body_min_rate,
        )
        meter.done = not _has_body(headers)  # nothing to read, nothing to close the connection over
        meter.setting = policy.setting(files)
        if room is not None and room + policy.overhead < meter.limit:
            meter.limit, meter.setting = room + policy.overhead, "your quota, RESTYLE_QUOTA_BYTES"
        answered = {"app": False, "guard": False}

        async def answer(response: JSONResponse) -> None:
            answered["guard"] = True
            await frame.refusal_page(scope, response)(scope, receive, send)

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

        with contextlib.suppress(BodyRefused):
            await self.app(scope, meter.receive, guarded_send)
        if meter.refused is not None and not answered["app"] and not answered["guard"]:
            await answer(refusal(meter.refused.status, meter.refused.detail))

    def decide(self, scope: Scope, headers: Headers, policy: Policy, files: bool) -> JSONResponse | None:
        """A refusal, or None: everything that the headers alone can settle."""
        settings = self.context.settings
        if browsers.cross_origin(scope, headers, settings):  # before the sign-in form too: login CSRF
            return refusal(403, "a form from another site is refused: use this service's own pages")
        if (scope["method"], scope["path"].rstrip("/")) == ("POST", "/login"):
            wait = self.logins.take(_client(scope))
            if wait:
                return refusal(
                    429,
                    f"too many sign-in attempts; try again in {self.logins.retry_after(wait)} s",
                    {"Retry-After": self.logins.retry_after(wait)},
                )
        try:
            who = principal_of(self.context, scope, headers)
        except JobStoreError:
            log.exception("the job store failed while a session was looked up")
            return refusal(503, UNAVAILABLE)
        if who is not None:
            scope[PRINCIPAL] = who  # resolved once: the routes' dependencies read it (auth.caller)
        if policy.access != Access.PUBLIC:
            if who is None:
                return refusal(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
            if policy.access == Access.ADMIN and not who.is_admin:
                return refusal(403, "this route is for admins")
        declared = headers.get("content-length")
        if declared is not None:
            limit = policy.body_limit(settings, files)
            if not declared.strip().isdigit():
                return refusal(400, "Content-Length must be a number of bytes")
            if int(declared) > limit:
                return refusal(413, f"the request body is over the limit of {limit} bytes ({policy.setting(files)})")
        if who is not None and policy.access == Access.SUBMITTER:  # last: a request refused for its size costs nothing
            wait = self.context.submissions.take(who.name)
            if wait:
                after = self.context.submissions.retry_after(wait)
                return refusal(
                    429, f"too many submissions from {who.name}; try again in {after} s", {"Retry-After": after}
                )
            scope[COUNTED] = True
        if who is not None and policy.stores:
            wait = self.context.stores.take(who.name)
            if wait:
                after = self.context.stores.retry_after(wait)
                return refusal(
                    429, f"too many uploads to store from {who.name}; try again in {after} s", {"Retry-After": after}
                )
        return None


def _closing(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with ``Connection: close``: uvicorn then closes the connection after the answer."""
    return [(k, v) for k, v in headers if k.lower() != b"connection"] + [(b"connection", b"close")]


def _allow(headers: list[tuple[bytes, bytes]], router: Router, scope: Scope) -> list[tuple[bytes, bytes]]:
    """A 405's Allow header with every method of every route at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in routes_of(router):
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    if not methods:
        return headers
    return [(k, v) for k, v in headers if k.lower() != b"allow"] + [(b"allow", ", ".join(sorted(methods)).encode())]


def routes_of(router: Router) -> list[BaseRoute]:
    """Every route of the app, included routers' too (FastAPI from 0.165 keeps an included router as one entry)."""
    found: list[BaseRoute] = []
    for route in router.routes:
        inner = getattr(route, "original_router", None)
        found += routes_of(inner) if inner is not None else [route]
    return found


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
            raise self._refuse(
                408,
                f"the request body came too slowly ({self.received} bytes in "
                f"{loop.time() - self.started:.0f} s); send it at least {self.min_rate} bytes/s",
            ) from None
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
