"""What the service owes a browser: its session cookie, the cross-origin check on forms, and the headers on every page.

**Sessions.** ``POST /login`` checks a token and opens a server-side session
(:mod:`restyle.stores.sessions`): the cookie holds a random id, never the token; it is HttpOnly,
SameSite=Lax, and Secure when the request came over https (``cookie_secure``); over https its name
takes the ``__Host-`` prefix, so no other host (a sibling subdomain) can plant one. ``POST /logout``
deletes the session's row: the cookie is worth nothing after, wherever a copy of it went.

**Cross-site requests (CSRF).** Every request that may change something (any method but GET, HEAD,
OPTIONS) and carries no ``Authorization`` header (a form, sent with the cookie or, for /login, with
nothing) must come from this service's own pages. The check is the one Go's ``net/http``
``CrossOriginProtection`` makes (and OWASP's CSRF cheat sheet describes, "Fetch Metadata" and
"verifying origin with standard headers"): ``Sec-Fetch-Site`` when the browser sends it
(``same-origin`` or ``none`` pass); else ``Origin``, whose host must be the request's own ``Host``
(or ``public_url``'s); a request with neither comes from no browser and passes. This guards every
form alike, the sign-in form too (login CSRF: another site signing a visitor in as its own tenant).

**Headers.** Every answer gets ``Content-Security-Policy`` (scripts and styles only from this
service, inline ones only with the page's nonce; no framing), ``X-Frame-Options: DENY``,
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (signed links carry their
signature in the URL) and, over https, ``Strict-Transport-Security``.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Scope, Send

from restyle.config import Settings

COOKIE = "restyle_session"
SECURE_COOKIE = "__Host-" + COOKIE  # over https: Secure, Path=/, no Domain, so no other host can set it
NONCE = "restyle.nonce"  # scope key: this answer's CSP nonce (the templates' inline scripts and styles carry it)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_PAGES_CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# /docs and /redoc: Swagger UI and ReDoc from this service's own files (.frame), started by the page's nonced script;
# their styles are set inline by the viewers (ReDoc's styled-components, Swagger UI's React), ReDoc's search runs in a
# blob: worker.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_DOCS = ("/docs", "/redoc")


def is_https(scope: Scope, settings: Settings) -> bool:
    """Whether the browser reached the service over https (uvicorn takes a trusted proxy's X-Forwarded-Proto)."""
    if settings.cookie_secure != "auto":
        return settings.cookie_secure == "always"
    return scope.get("scheme") == "https" or settings.public_url.lower().startswith("https://")


def session_of(scope: Scope, headers: Headers, settings: Settings) -> str:
    """The session id the request's cookie holds ("" without one): over https only the ``__Host-`` cookie."""
    name = SECURE_COOKIE if is_https(scope, settings) else COOKIE
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return ""


def set_session(response: Response, scope: Scope, settings: Settings, session_id: str) -> None:
    secure = is_https(scope, settings)
    response.set_cookie(
        SECURE_COOKIE if secure else COOKIE,
        session_id,
        max_age=int(settings.session_seconds),
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def end_session(response: Response, scope: Scope, settings: Settings) -> None:
    secure = is_https(scope, settings)
    response.delete_cookie(SECURE_COOKIE if secure else COOKIE, path="/", secure=secure, httponly=True, samesite="lax")


def cross_origin(scope: Scope, headers: Headers, settings: Settings) -> bool:
    """Whether a request that may change something came from another site's page (refuse it: 403)."""
    if scope["method"] in SAFE_METHODS or "authorization" in headers:
        return False  # a bearer token is not sent by a browser on its own; a signed link carries its signature
    if scope["method"] == "PUT" and scope["path"].startswith("/files/"):
        return False
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none") and not _trusted(headers.get("origin"), headers, settings)
    origin = headers.get("origin")
    if origin is None:
        return False  # no browser sent this (or one too old for either header: SameSite=Lax still holds)
    return not _trusted(origin, headers, settings)


def _trusted(origin: str | None, headers: Headers, settings: Settings) -> bool:
    if not origin or origin == "null":
        return False
    host = urlsplit(origin).netloc.lower()
    own = {headers.get("host", "").lower()}
    if settings.public_url:
        own.add(urlsplit(settings.public_url).netloc.lower())
    return host in own


def new_nonce(scope: Scope) -> str:
    scope[NONCE] = secrets.token_urlsafe(16)
    return scope[NONCE]


def nonce(request) -> str:
    """The page's CSP nonce, for its templates: ``<script nonce="{{ nonce(request) }}">``."""
    return request.scope.get(NONCE, "")


def with_headers(send: Send, scope: Scope, settings: Settings) -> Send:
    """``send`` that adds the security headers to the answer's start (the route's own win)."""
    path = scope.get("path", "")
    csp = (_DOCS_CSP if path in _DOCS else _PAGES_CSP).format(nonce=new_nonce(scope))
    extra = {
        b"content-security-policy": csp.encode(),
        b"x-frame-options": b"DENY",
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"no-referrer",
        b"cross-origin-opener-policy": b"same-origin",
    }
    if is_https(scope, settings):
        extra[b"strict-transport-security"] = b"max-age=31536000"

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            have = {key.lower() for key, _ in message.get("headers", [])}
            added = [(key, value) for key, value in extra.items() if key not in have]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return sending
