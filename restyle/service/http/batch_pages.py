"""The dashboard's batches: a list with a form to start one over a prefix, and a page per batch whose items
page (``?after=SEQ``) and filter by state, reasons shown, with a live progress bar.

Pages find the caller where the guard put it (from the session cookie) and redirect to /login
without one; a batch the caller may not see is 404, as in the API.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from restyle.errors import Refusal
from restyle.service import batches
from restyle.service.context import Principal
from restyle.service.http.auth import signed_in, submitter
from restyle.service.http.batches import batch_out, item_out, visible_batch
from restyle.service.http.dashboard import page_error, refused, templates
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.stores.states import ItemState

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)
PAGE = 100


@router.get("/batches", response_class=HTMLResponse)
def batches_page(request: Request, error: str = "", app: Web = Depends(web)):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    found = app.context.batches.list(owner=None if who.is_admin else who.name, limit=200)
    context = {"who": who, "batches": [batch_out(app, b) for b in found], "error": page_error(request, app, error)}
    return templates.TemplateResponse(request, "batches.html", context)


@router.post("/batches")
def start_batch(
    request: Request,
    background: BackgroundTasks,
    prefix: str = Form(""),
    style: str = Form("7"),
    model: str = Form(""),
    max_failures: str = Form(""),
    who: Principal = Depends(submitter),
    app: Web = Depends(web),
):
    fields = {"model": model or None, "style": None if model else style or None}
    asked = batches.BatchRequest(prefix, {k: v for k, v in fields.items() if v}, max_failures or None)
    try:
        batch = batches.submit(app.context, who, asked)
    except Refusal as exc:  # back to the page, with the reason
        return refused(request, app, "/batches", str(exc))
    background.add_task(batches.settle, app.context, batch.id)
    return RedirectResponse(f"/batches/{batch.id}", status_code=303)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    batch_id: str,
    state: str = "",
    after: int = Query(-1, ge=-1),
    app: Web = Depends(web),
):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)

    def read():
        batch = visible_batch(app.context, who, batch_id)
        wanted = ItemState(state) if state in tuple(ItemState) else None
        page = app.context.batches.items(batch.id, wanted, after, PAGE + 1)
        return batch, wanted, page

    batch, wanted, page = await run_in_threadpool(read)
    context = {
        "who": who,
        "batch": batch_out(app, batch),
        "items": [item_out(batch, item) for item in page[:PAGE]],
        "state": wanted or "",
        "states": list(ItemState),
        "next_after": page[PAGE - 1].seq if len(page) > PAGE else None,
        "after": after,
    }
    return templates.TemplateResponse(request, "batch.html", context)
