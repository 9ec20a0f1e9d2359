"""/api/batches*: a batch over a prefix of the caller's space, its progress, its items a page at a time.

Owners see their own batches (another tenant's is 404, as a job); admins see every batch. Items
page by their place in the listing (``?after=SEQ``), filtered by state, so a batch of 100,000
items answers a page as fast as a batch of ten.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from restyle.errors import Conflict, Invalid, NotFound
from restyle.pipeline.manifest import MANIFEST_JSONL, MANIFEST_PARQUET
from restyle.service import batches, intake, keys
from restyle.service.context import Context, Principal
from restyle.service.http.auth import caller, submitter
from restyle.service.http.forms import DATASET_FORM
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.schemas import BatchIn, BatchOut, BatchProgress, DatasetOut, ItemOut, ItemPage, Link
from restyle.service.http.web import Web, web
from restyle.stores.batches import Batch, Item
from restyle.stores.objects import local_link
from restyle.stores.states import BATCH_ACTIVE, BatchState, ItemState

router = APIRouter(route_class=PolicyRoute)
MAX_FILES = 1000  # files in one upload form (a larger folder comes in several)


@router.post("/api/batches", status_code=201, response_model=BatchOut, summary="Score every object under a prefix")
async def create_batch(
    body: BatchIn, background: BackgroundTasks, who: Principal = Depends(submitter), app: Web = Depends(web)
) -> BatchOut:
    max_failures = None if body.max_failures is None else str(body.max_failures)
    request = batches.BatchRequest(body.prefix, body.spec, max_failures, body.webhook)
    batch = await run_in_threadpool(batches.submit, app.context, who, request)  # the listing streams in a thread
    background.add_task(batches.settle, app.context, batch.id)  # all reused: it ends (and writes its manifest)
    return batch_out(app, batch)


@router.post(
    "/api/datasets",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=DATASET_FORM,
    summary="Upload files into your space (datasets/<you>/<prefix>/), for a batch over that prefix",
)
async def upload_dataset(request: Request, who: Principal = Depends(caller), app: Web = Depends(web)) -> DatasetOut:
    async with request.form(max_files=MAX_FILES, max_fields=5) as form:
        prefix = form.get("prefix") or ""
        files = [(f.filename or "", f.file) for f in form.getlist("files") if isinstance(f, UploadFile)]
        if not isinstance(prefix, str) or not files:
            raise Invalid("a multipart form: the prefix as text, the files as 'files' fields (at most 1000 at once)")
        root, stored = await run_in_threadpool(intake.store_dataset, app.context, who, prefix, files)
    return DatasetOut(prefix=root.removeprefix(keys.dataset(who.name, "")), files=stored)


@router.get("/api/batches", response_model=list[BatchOut], summary="Batches you may see, newest first")
def list_batches(
    limit: int = Query(50, ge=1, le=500),
    before: str | None = Query(None, max_length=32, description="a batch's id: the page after it"),
    who: Principal = Depends(caller),
    app: Web = Depends(web),
) -> list[BatchOut]:
    found = app.context.batches.list(owner=None if who.is_admin else who.name, limit=limit, before=before)
    return [batch_out(app, batch) for batch in found]


@router.get("/api/batches/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> BatchOut:
    return batch_out(app, visible_batch(app.context, who, batch_id))


@router.get("/api/batches/{batch_id}/items", response_model=ItemPage, summary="A page of a batch's items")
def batch_items(
    batch_id: str,
    state: Literal[tuple(ItemState)] | None = None,  # type: ignore[valid-type] - the states an item has
    after: int = Query(-1, ge=-1, description="the last seq of the page before"),
    limit: int = Query(100, ge=1, le=500),  # a page answers within 100 ms at p95 (bench/batch.py --service-only)
    who: Principal = Depends(caller),
    app: Web = Depends(web),
) -> ItemPage:
    batch = visible_batch(app.context, who, batch_id)
    items = app.context.batches.items(batch.id, ItemState(state) if state else None, after, limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return ItemPage(items=[item_out(batch, item) for item in items], next_after=items[-1].seq if more else None)


@router.post("/api/batches/{batch_id}/cancel", response_model=BatchOut)
def cancel_batch(
    batch_id: str, background: BackgroundTasks, who: Principal = Depends(caller), app: Web = Depends(web)
) -> BatchOut:
    """Queued units are cancelled at once (their items not run), running ones at their next item or chunk; the
    batch ends, its manifest written, once the last has stopped (``reason`` says it is cancelled meanwhile)."""
    batch = batches.cancel(app.context, visible_batch(app.context, who, batch_id), who)
    background.add_task(batches.settle, app.context, batch.id)  # the manifest is written after the answer
    return batch_out(app, batch)


@router.get(
    "/api/batches/{batch_id}/manifest", response_model=Link, summary="A link to the manifest of a batch that ended"
)
def manifest_link(
    batch_id: str,
    format: Literal["jsonl", "parquet"] = "jsonl",
    who: Principal = Depends(caller),
    app: Web = Depends(web),
) -> Link:
    batch = visible_batch(app.context, who, batch_id)
    if batch.state in BATCH_ACTIVE:
        raise Conflict(f"batch {batch.id} has no manifest yet (it is {batch.state})")
    name = MANIFEST_PARQUET if format == "parquet" else MANIFEST_JSONL
    key, expires = batch.output + name, app.context.settings.link_seconds
    url = app.context.data.presign(key, expires) or local_link(
        app.context.settings.base_url, app.context.link_secret, key, expires
    )
    return Link(url=url, expires_at=int(time.time()) + expires)


def visible_batch(context: Context, who: Principal, batch_id: str) -> Batch:
    """The batch if this principal may see it; NotFound otherwise (whether it exists is nobody else's business)."""
    batch = context.batches.get(batch_id) if re.fullmatch(r"[0-9a-f]{1,32}", batch_id) else None
    if batch is None or not (who.is_admin or batch.owner == who.name):
        raise NotFound(f"no batch {batch_id[:40]}")
    return batch


def batch_out(app: Web, batch: Batch) -> BatchOut:
    running = batch.state == BatchState.RUNNING and not batch.stop
    space = keys.dataset(batch.owner, "")
    return BatchOut(
        id=batch.id,
        owner=batch.owner,
        state=batch.state,
        prefix=batch.source.removeprefix(space),
        output=batch.output,
        model=batches.label(batch.params),
        spec=batch.params.spec.model_dump(mode="json") if batch.params else {},
        max_failures=batch.max_failures,
        reason=batch.reason,
        progress=BatchProgress(
            total=batch.total,
            done=batch.ended,
            succeeded=batch.succeeded,
            failed=batch.failed,
            reused=batch.reused,
            not_run=batch.not_run,
            left=batch.left,
            frames=batch.frames,
            eta_s=app.speeds.seconds_left(f"batch:{batch.id}", batch.ended, batch.total, running),
        ),
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        finished_at=batch.finished_at,
        manifest=None if batch.state in BATCH_ACTIVE else batch.output + MANIFEST_JSONL,
    )


def item_out(batch: Batch, item: Item) -> ItemOut:
    """An item as the API shows it: its manifest row (one place names its input and output), its place and unit."""
    row = batches.manifest_row(batch, item)
    shown = row.model_dump(
        include={"input", "size", "version", "kind", "state", "frames", "seconds", "runtime", "precision", "node"}
    )
    return ItemOut(seq=item.seq, reason=item.reason, output=row.output or None, job=item.job_id, **shown)
