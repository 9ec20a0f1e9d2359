"""The service's web face (FastAPI; OpenAPI at /docs): the guard in front, one error table, the routers.

The domain below raises :mod:`restyle.errors`; :data:`STATUSES` is the one place they become
HTTP statuses (as httpx maps its transport's errors in one table): the most specific class in
the table wins.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from restyle import __version__
from restyle.config import Settings
from restyle.errors import (
    Conflict,
    InputError,
    Invalid,
    JobStoreError,
    ModelError,
    NotFound,
    Refusal,
    RestyleError,
    StoreError,
    TooLarge,
)
from restyle.service.context import Context, clean_scratch
from restyle.service.http import (
    batch_pages,
    batches,
    catalogue,
    dashboard,
    files,
    frame,
    job_actions,
    job_buttons,
    jobs,
    metrics,
    webhooks,
)
from restyle.service.http.guard import UNAVAILABLE, Guard
from restyle.service.http.web import Web

log = logging.getLogger("restyle")

# Domain errors -> statuses. Bad input is the caller's to fix (422); only the stores failing is 503.
STATUSES: dict[type[RestyleError], int] = {
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Invalid: 422,
    Refusal: 422,
    InputError: 422,
    ModelError: 422,
    StoreError: 503,
    JobStoreError: 503,
    RestyleError: 503,
}

# What any API route may answer besides its own success: the guard's refusals and the routes' own.
ERRORS = {
    400: "unreadable request",
    401: "no valid bearer token",
    403: "not allowed to this token",
    404: "no such job or object (or not yours)",
    408: "the body came too slowly",
    409: "not in a state for this",
    413: "the body is over its limit",
    422: "invalid parameters",
    429: "over the rate; see Retry-After",
    503: "a store is unreachable; try again",
}


def create_app(settings: Settings, *, run_trigger: bool = False) -> FastAPI:
    """The service's app. With ``run_trigger`` it also polls the inbox, announces job ends (the notifier) and
    deletes what retention lets go (restyle.service.retention), in threads while it serves."""
    web = Web.of(Context(settings))
    app = FastAPI(
        title="restyle",
        version=__version__,
        lifespan=_lifespan(web, run_trigger),
        description="Restyle videos with neural networks: submit, watch, download.",
        docs_url=None,  # served by .frame from installed assets, not a CDN
        redoc_url=None,
    )
    app.state.web = web
    app.state.context, app.state.trigger = web.context, web.trigger  # for tests and tools that reach in
    app.state.metrics = metrics.registry(web.context)
    app.add_middleware(Guard, context=web.context, router=app.router)  # tokens, rates and sizes, before any body
    app.add_exception_handler(RestyleError, restyle_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    routers = (jobs, job_actions, batches, files, catalogue, dashboard, job_buttons, batch_pages, metrics, webhooks)
    for router in (module.router for module in routers):
        app.include_router(router)
    frame.install(app)
    _document(app)
    return app


def _lifespan(web: Web, run_trigger: bool):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clean_scratch(web.context.settings)  # upload spools of API processes that were killed
        stop = threading.Event()
        threads = [
            threading.Thread(target=loop, args=(stop,), daemon=True)
            for loop in ((web.trigger.run, web.notifier.run, web.retention.run) if run_trigger else ())
        ]
        for thread in threads:
            thread.start()
        if threads:
            threading.Thread(target=web.gallery.warm, daemon=True).start()
        yield
        stop.set()
        for thread in threads:
            thread.join(timeout=5)

    return lifespan


def status_of(exc: RestyleError) -> int:
    """The status of the most specific class of ``exc`` in :data:`STATUSES`."""
    return next(STATUSES[kind] for kind in type(exc).__mro__ if kind in STATUSES)


async def restyle_error(request: Request, exc: RestyleError) -> Response:
    """The domain's error as its status. A 503's text is fixed: a store's own message names the service's folders
    and hosts, which are nobody's business but the logs'."""
    status = status_of(exc)
    if status == 503:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": UNAVAILABLE}, status_code=503)
    if status == 404 and frame.is_page(request):  # a page a person opened: the dashboard's own 404
        return frame.error_page(request, 404)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, safe for any input: a NaN or Infinity that came in is echoed as a string, not a 500."""
    detail = _json_safe(jsonable_encoder(exc.errors(), custom_encoder={bytes: repr}))
    return JSONResponse({"detail": detail}, status_code=422)


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


def _document(app: FastAPI) -> None:
    """Serve the OpenAPI document as the service really answers (see :func:`document`)."""
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
    schemas["Problem"] = {
        "type": "object",
        "title": "Problem",
        "required": ["detail"],
        "properties": {
            "detail": {
                "title": "Detail",
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                ],
            }
        },
    }
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
