"""/files/*: the service's own signed links, for a folder data store (an S3 store signs its own).

A download link is for an output only; an upload link is single-use, for the inbox key its job
waits on. The signature (HMAC of key and expiry) is the only credential a link carries.
"""

from __future__ import annotations

import hmac
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from restyle.errors import Conflict
from restyle.service import intake, keys
from restyle.service.context import Context, scratch_dir
from restyle.service.http import media
from restyle.service.http.guard import longest_body_s, spool_body
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.stores.objects import BadKey, check_key, sign_local

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


@router.get("/files/{key:path}")
def signed_download(
    key: str,
    expires: int,
    signature: str,
    request: Request,
    disposition: media.Disposition = "attachment",
    app: Web = Depends(web),
) -> Response:
    """The output, to download (``attachment``, the default) or to play in the page (``inline``); either way with
    HTTP Range requests, so a player can seek. The disposition is not signed: it changes nothing a link opens."""
    check_link(app.context, key, expires, signature)
    if not keys.is_output(key):
        raise HTTPException(403, "only outputs are downloadable")
    if not Path(app.context.data.path(key)).is_file():
        raise HTTPException(404, "no such output")
    return media.serve(app.context.data, key, request.headers.get("range"), disposition)


@router.put("/files/{key:path}")
async def signed_upload(key: str, expires: int, signature: str, request: Request, app: Web = Depends(web)) -> dict:
    context = app.context
    check_link(context, key, expires, signature)
    if not keys.is_inbox(key):
        raise HTTPException(403, "uploads go to the inbox")
    # One request holds the link (compare-and-set, before the body): a second, even a concurrent one, gets 409.
    holder = f"upload:{uuid.uuid4().hex}"
    waiting = context.jobs.claim_upload(key, holder, until=time.time() + longest_body_s(context.settings))
    if waiting is None:
        raise Conflict("this upload link was used already, is in use, or its job was cancelled")
    try:
        # The guard caps the size and the pace; here the bytes go to a file, never all in memory.
        spool = await spool_body(request, scratch_dir(context.settings))
        try:
            job = await run_in_threadpool(intake.store_signed_upload, context, key, spool)
        finally:
            spool.unlink(missing_ok=True)
    except BaseException:
        context.jobs.release_upload(key, holder)  # the link may be tried again
        raise
    return {"job": (job or waiting).id}


def check_link(context: Context, key: str, expires: int, signature: str) -> None:
    try:
        check_key(key)
    except BadKey:
        raise HTTPException(404, "no such object") from None
    if expires < time.time():
        raise HTTPException(403, "this link has expired")
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a signature is anything a stranger sends.
    expected = sign_local(context.link_secret, key, expires).encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise HTTPException(403, "this link's signature is wrong")
