"""Who is calling: resolved once per request by the guard, read here by the routes' dependencies.

The guard (:mod:`.guard`) turns the bearer token, or the dashboard's session cookie, into a
:class:`~restyle.service.context.Principal` and stores it in ``scope[PRINCIPAL]``; it also
spends a submission off the token's rate before the body is read and says so in
``scope[COUNTED]``. Nothing below parses a token again.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import Scope

from restyle.errors import NotFound
from restyle.service.context import Context, Principal
from restyle.service.http import browsers
from restyle.stores.jobs import Job

PRINCIPAL = "restyle.principal"  # scope key: who the guard found behind the request's token (absent: nobody)
COUNTED = "restyle.submission_counted"  # scope key: the guard spent a rate token for this request
SESSION = "restyle.session"  # scope key: the dashboard session id the request's cookie held (absent: none)


def principal_of(context: Context, scope: Scope, headers: Headers) -> Principal | None:
    """Who the bearer token (or the dashboard's session cookie) stands for; None without a known one.
    A session stands for the token it signed in with, while that token is still configured."""
    token = bearer(headers)
    if token:
        return context.tokens.get(token)
    session = browsers.session_of(scope, headers, context.settings)
    if not session:
        return None
    scope[SESSION] = session
    signed = context.sessions.token_of(session)
    return context.token_digests.get(signed) if signed else None


def bearer(headers: Headers) -> str:
    """The bearer token as sent ("" without one): /metrics compares it with its own token."""
    header = headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def session_id(request: Request) -> str:
    """The dashboard session the request's cookie names ("" without one)."""
    return request.scope.get(SESSION, "")


def signed_in(request: Request) -> Principal | None:
    """The principal the guard found, or None (the dashboard's pages then redirect to /login)."""
    return request.scope.get(PRINCIPAL)


def caller(request: Request) -> Principal:
    """The principal behind the request's bearer token (or the dashboard's cookie); 401 without one."""
    who = signed_in(request)
    if who is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return who


def submitter(request: Request) -> Principal:
    """The caller, if it may submit one more job now; 429 with Retry-After when it is over its rate."""
    who = caller(request)
    if request.scope.get(COUNTED):  # the guard counted it already, before the body was read
        return who
    limiter = request.app.state.web.context.submissions
    wait = limiter.take(who.name)
    if wait:
        raise HTTPException(
            429,
            f"too many submissions from {who.name}; try again in {limiter.retry_after(wait)} s",
            headers={"Retry-After": limiter.retry_after(wait)},
        )
    return who


def admin(request: Request) -> Principal:
    """An admin caller; 403 for anyone else (the guard refuses them first on the routes its table marks admin)."""
    who = caller(request)
    if not who.is_admin:
        raise HTTPException(403, "this route is for admins")
    return who


def visible_job(context: Context, principal: Principal, job_id: str) -> Job:
    """The job if this principal may see it; NotFound otherwise (whether it exists is nobody else's business)."""
    job = context.jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{1,32}", job_id) else None
    if job is None or not (principal.is_admin or job.owner == principal.name):
        raise NotFound(f"no job {job_id[:40]}")
    return job
