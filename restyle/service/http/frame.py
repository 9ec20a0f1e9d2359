"""The frame every page shares, beyond the base template: the API's docs served from installed assets (no CDN),
the favicon, and the dashboard's own page for a 404/405/403 (an API path keeps its JSON answer).

Swagger UI and ReDoc come from the ``fastapi-offline`` package (MIT; Swagger UI is Apache-2.0, ReDoc MIT): its
``static`` folder is mounted at :data:`ASSETS`, so /docs and /redoc render on a box that reaches no other host,
under a CSP that allows scripts only from this service and the page's nonce (:mod:`.browsers`).
"""

from __future__ import annotations

import json
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from restyle.service.http.auth import signed_in
from restyle.service.http.dashboard import templates
from restyle.service.http.policy import PolicyRoute

ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's files, from fastapi-offline's package
_ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
# Paths a program calls: their errors stay JSON. Everything else is a page a person opened.
_MACHINE = ("/api/", "/files/", "/metrics", "/openapi.json", ASSETS + "/")

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#222"/>'
    '<path d="M7 24c4-10 9-15 18-17-3 5-5 11-11 14-2 1-5 2-7 3z" fill="#f2b134"/>'
    '<circle cx="10" cy="10" r="3" fill="#4f8df7"/></svg>'
)

# What a person reads for an error status on a page: a title and what to do.
PAGE_ERRORS = {
    403: ("Not allowed", "This page is not open to your token. Sign in with another, or go back to your jobs."),
    404: ("Not found", "There is no page here, or it is not yours to see. Check the address, or go back to your jobs."),
    405: ("Not here", "This address does not answer that kind of request. Go back to your jobs and start from there."),
}
# What a person reads when the door refused a page's request before it reached the page (restyle/service/http/guard.py).
REFUSALS = {
    400: ("Not understood", "Your browser sent a request this service cannot read. Go back and try again."),
    403: PAGE_ERRORS[403],
    408: (
        "Too slow",
        "Your upload arrived too slowly and was stopped. Go back and try again on a steadier line.",
    ),
    413: ("Too big", "What you sent is over this service's limit. Go back and pick a smaller file."),
    429: ("Too many at once", "You sent more than this service takes in a short while. Wait a moment, then go back."),
    503: ("Not available", "This service cannot reach its storage just now. Try again in a minute."),
}

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


def install(app: FastAPI) -> None:
    """The docs' assets, the frame's routes, and the page for an error on a page path."""
    app.mount(ASSETS, StaticFiles(directory=str(_ASSET_DIR)), name="docs-assets")
    app.include_router(router)
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]


def is_page(request: Request) -> bool:
    """Whether ``request`` is one a person's browser made for a page (not a program's call to the API)."""
    return not request.url.path.startswith(_MACHINE)


def error_page(request: Request, status: int, detail: str = "") -> HTMLResponse:
    """The dashboard's page for ``status``, in its frame (the header with the nav when signed in)."""
    title, advice = (PAGE_ERRORS | REFUSALS).get(
        status, ("Something went wrong", "Go back to your jobs and try again.")
    )
    context = {"who": signed_in(request), "status": status, "title": title, "advice": advice, "detail": detail}
    return templates.TemplateResponse(request, "error.html", context, status_code=status)


def refusal_page(scope: Scope, refusal: JSONResponse) -> Response:
    """The door's JSON ``refusal`` as a page in the frame when a person's browser asked for a page (a dashboard
    form over a limit, say), with its reason and headers (Retry-After, Connection: close); the API keeps JSON."""
    request = Request(scope)
    if not is_page(request) or refusal.status_code not in REFUSALS:
        return refusal
    page = error_page(request, refusal.status_code, json.loads(refusal.body)["detail"])
    page.headers.update(
        {k: v for k, v in refusal.headers.items() if k.lower() not in ("content-type", "content-length")}
    )
    return page


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if is_page(request) and exc.status_code in PAGE_ERRORS:
        response = error_page(request, exc.status_code, exc.detail if exc.status_code == 403 else "")
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    return await http_exception_handler(request, exc)


@router.get("/docs", response_class=HTMLResponse)
def swagger(request: Request):
    return templates.TemplateResponse(request, "apidocs.html", {"viewer": "swagger", "assets": ASSETS})


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request):
    return templates.TemplateResponse(request, "apidocs.html", {"viewer": "redoc", "assets": ASSETS})


@router.get("/favicon.svg")
@router.get("/favicon.ico")
def favicon():
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})
