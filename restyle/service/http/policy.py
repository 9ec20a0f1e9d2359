"""Route policy, in one table: who may call each route, and how large a body it may take.

The guard (:mod:`.guard`) reads this table to decide from a request's headers, before its body;
:class:`PolicyRoute` writes the same policy into each operation of the OpenAPI document
(``x-restyle-access``, ``x-restyle-limit``, ``x-restyle-files``), so the document cannot disagree
with what the guard does. A route not in the table gets :func:`default`: any token under
``/api/``, no token elsewhere (pages redirect to /login; signed links carry their signature).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from restyle.config import Settings
from restyle.errors import Invalid
from restyle.jobspec import MAX_JSON_DEPTH, json_depth

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields beside the file(s)


class Access(StrEnum):
    PUBLIC = "public"  # the guard asks no token (the route may: /metrics its own, pages redirect to /login)
    TOKEN = "token"  # any valid token: a bearer header, or the dashboard's cookie
    SUBMITTER = "submitter"  # any valid token, and one submission off its rate, spent before the body is read
    ADMIN = "admin"  # an admin's token; anyone else is refused before a byte of the body is read


class Files(StrEnum):
    NONE = "none"  # no file: every body is held to max_request_bytes
    FORM = "form"  # a multipart form carries the file(s): such a body may hold up to the limit (issue 21)
    BODY = "body"  # the body is the file (a signed PUT), whatever its Content-Type


@dataclass(frozen=True)
class Policy:
    access: Access = Access.TOKEN
    files: Files = Files.NONE
    limit: tuple[str, ...] = ()  # the settings whose sum (+ overhead) bounds a body that carries files
    overhead: int = 0
    quota: tuple[str, ...] = ()  # what a request counts against its caller's quotas (limits.QUOTAS); admins have none
    stores: bool = False  # it stores bytes without making a job: one off the caller's store rate (store_rate_*)

    def carries_files(self, content_type: str) -> bool:
        if self.files == Files.BODY:
            return True
        return self.files == Files.FORM and content_type.lower().startswith("multipart/form-data")

    def body_limit(self, settings: Settings, files: bool) -> int:
        """The most a body may hold: the files' settings for a body that carries files, else max_request_bytes."""
        if not files:
            return settings.max_request_bytes
        return sum(getattr(settings, name) for name in self.limit) + self.overhead

    def setting(self, files: bool) -> str:
        """The setting(s) behind :meth:`body_limit`, named in its refusals: what a person changes to allow more."""
        return " + ".join(f"RESTYLE_{name.upper()}" for name in (self.limit if files else ("max_request_bytes",)))

    def openapi(self) -> dict[str, Any]:
        shown = {
            "x-restyle-access": str(self.access),
            "x-restyle-files": str(self.files),
            "x-restyle-limit": " + ".join(self.limit) if self.files != Files.NONE else "max_request_bytes",
        }
        if self.quota:
            shown["x-restyle-quota"] = " + ".join(self.quota)
        return shown


_VIDEO_FORM = Policy(
    Access.SUBMITTER, Files.FORM, ("max_upload_bytes", "max_picture_bytes"), FORM_OVERHEAD, ("jobs", "bytes")
)
_STORE_FORM = Policy(Access.TOKEN, Files.FORM, ("max_upload_bytes",), FORM_OVERHEAD, ("bytes",), stores=True)

ROUTES: dict[tuple[str, str], Policy] = {
    # Making jobs: rate-limited per token before the body is read; a video and perhaps its style picture.
    ("POST", "/api/jobs"): _VIDEO_FORM,
    ("POST", "/submit"): _VIDEO_FORM,  # the dashboard's form (the cookie is its token)
    ("POST", "/api/uploads"): Policy(Access.SUBMITTER, quota=("jobs", "bytes")),  # the bytes come to a signed link
    ("PUT", "/files/{key:path}"): Policy(Access.PUBLIC, Files.BODY, ("max_upload_bytes",)),  # a signed upload link
    # Acting on a job (restyle.service.actions): a retry or a run again queues a job, as a submission does.
    ("POST", "/api/jobs/{job_id}/retry"): Policy(Access.SUBMITTER, quota=("jobs",)),
    ("POST", "/api/jobs/{job_id}/rerun"): Policy(Access.SUBMITTER, quota=("jobs",)),
    ("POST", "/jobs/{job_id}/retry"): Policy(Access.SUBMITTER, quota=("jobs",)),  # the job page's buttons
    ("POST", "/jobs/{job_id}/rerun"): Policy(
        Access.SUBMITTER, Files.FORM, ("max_picture_bytes",), FORM_OVERHEAD, ("jobs",)
    ),  # perhaps a painting
    ("POST", "/jobs/{job_id}/cancel"): Policy(Access.TOKEN),
    ("POST", "/jobs/{job_id}/delete"): Policy(Access.TOKEN),
    # Batches: one submission off the rate for the whole batch (its listing is the service's work, not a body).
    ("POST", "/api/batches"): Policy(Access.SUBMITTER, quota=("jobs",)),
    ("POST", "/batches"): Policy(Access.SUBMITTER, quota=("jobs",)),  # the dashboard's form
    ("POST", "/api/datasets"): _STORE_FORM,
    ("GET", "/api/batches"): Policy(Access.TOKEN),
    ("GET", "/api/batches/{batch_id}"): Policy(Access.TOKEN),
    ("GET", "/api/batches/{batch_id}/items"): Policy(Access.TOKEN),
    ("GET", "/api/batches/{batch_id}/manifest"): Policy(Access.TOKEN),
    ("POST", "/api/batches/{batch_id}/cancel"): Policy(Access.TOKEN),
    # The catalogue.
    ("POST", "/api/models"): Policy(Access.ADMIN, Files.FORM, ("max_model_bytes",), FORM_OVERHEAD, stores=True),
    ("DELETE", "/api/models/{name}"): Policy(Access.ADMIN),
    ("POST", "/api/pictures"): Policy(
        Access.TOKEN, Files.FORM, ("max_picture_bytes",), FORM_OVERHEAD, ("pictures", "bytes"), stores=True
    ),
    # Webhooks: a tenant reads its own signing secret (an admin, anyone's).
    ("GET", "/api/webhook-secret"): Policy(Access.TOKEN),
    # Admins only. (A job's log is too, but after its visibility check: a stranger's job is 404, not 403.)
    ("POST", "/api/events"): Policy(Access.ADMIN),
    ("GET", "/api/workers"): Policy(Access.ADMIN),
}

_MATCHERS = [(method, compile_path(path)[0], policy) for (method, path), policy in ROUTES.items()]


def default(path: str) -> Policy:
    return Policy(Access.TOKEN) if path.startswith("/api/") else Policy(Access.PUBLIC)


def policy_for(method: str, path: str) -> Policy:
    """The policy of a request (a path as sent) or of a route (its path template)."""
    path = path.rstrip("/") or "/"
    declared = ROUTES.get((method, path))
    if declared is not None:
        return declared
    for wanted, pattern, policy in _MATCHERS:
        if wanted == method and pattern.match(path):
            return policy
    return default(path)


class PolicyRoute(APIRoute):
    """An APIRoute whose OpenAPI operation shows its policy from :data:`ROUTES`, and whose JSON body (a route that
    declares one) is refused for nesting too deep before FastAPI parses it (:func:`restyle.jobspec.load_json`)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any):
        methods = kwargs.get("methods") or ["GET"]
        extra = dict(kwargs.get("openapi_extra") or {})
        for method in methods:
            extra |= policy_for(method.upper(), path).openapi()
        kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            kind = request.headers.get("content-type", "").lower()
            if not kind.startswith(("multipart/", "application/x-www-form-urlencoded")):
                body = await request.body()  # kept by the request: FastAPI parses the same bytes next
                if json_depth(body) > MAX_JSON_DEPTH:
                    raise Invalid(f"the body nests lists or objects deeper than {MAX_JSON_DEPTH} levels")
            return await handler(request)

        return checked
