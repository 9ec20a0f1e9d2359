"""Batches dropped in the inbox: a folder, or a list, and a request file beside it.

Under ``inbox/batches/`` (where the trigger makes no single jobs) a dropped folder becomes a batch
when its request lands beside it: ``photos.batch.json`` for the folder ``photos/``. The request is
the batch's fields as the API takes them, all optional::

    {"spec": {"style": "7"}, "max_failures": "5%", "webhook": "https://hooks.example/restyle",
     "list": ["photos/a.jpg", "clips/b.mp4"]}

Without ``spec`` the batch gets the inbox's default (``inbox_spec``); with ``list`` the batch is
the objects it names (under ``inbox/batches/``) instead of a folder. Copy the folder first, the
request last: the request is the batch's start. Each version of a request is taken once: its
receipt (the batch, or why it was refused) is kept in the system store, so a restart never makes a
second batch; a bad request is refused with its reason in the log and the receipt, and never
stops the inbox.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from restyle.errors import Invalid, RestyleError
from restyle.jobspec import load_json
from restyle.service import keys
from restyle.service.batches import BatchRequest, submit
from restyle.service.context import DROPPED_OWNER, Context, Principal
from restyle.service.specs import MAX_SIDECAR_BYTES
from restyle.stores.objects import StoreError

log = logging.getLogger("restyle.trigger")

FIELDS = {"spec", "max_failures", "webhook", "list"}


def take_request(context: Context, key: str, etag: str) -> str | None:
    """Start the batch a dropped request asks for, once per version of it; the batch's id, or None."""
    receipt = keys.inbox_batch_receipt(key, etag)
    if context.system.exists(receipt):
        return None
    try:
        batch = submit(context, Principal(DROPPED_OWNER, "submitter"), _request(context, key))
        outcome: dict[str, Any] = {"request": key, "batch": batch.id}
        log.info("batch %s for the dropped request %s", batch.id, key)
    except (RestyleError, ValueError, RecursionError) as exc:  # a bad request is refused alone, never the inbox
        if isinstance(exc, StoreError):
            raise  # the store is down: the request is looked at again on the next scan
        outcome = {"request": key, "refused": str(exc)[:500]}
        log.warning("dropped batch request %s refused: %s", key, exc)
    context.system.put_bytes(json.dumps(outcome).encode(), receipt)
    return outcome.get("batch")


def _request(context: Context, key: str) -> BatchRequest:
    name = key[len(keys.INBOX_BATCHES) :]
    if context.data.info(key).size > MAX_SIDECAR_BYTES:
        raise Invalid(f"batch request {name} is over {MAX_SIDECAR_BYTES} bytes")
    body = load_json(context.data.get_bytes(key) or b"{}", f"batch request {name}")
    if not isinstance(body, dict) or set(body) - FIELDS:
        raise Invalid(f"batch request {name} must be an object with at most the fields {', '.join(sorted(FIELDS))}")
    listed = body.get("list")
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(n, str) for n in listed)):
        raise Invalid(f"batch request {name}: list must be a list of names under {keys.INBOX_BATCHES}")
    spec = body.get("spec")
    if spec is None:
        spec = context.settings.inbox_spec.model_dump(mode="json", exclude_defaults=True)
    if not isinstance(spec, dict):
        raise Invalid(f"batch request {name}: spec must be an object of JobSpec fields")
    folder = name.removesuffix(keys.BATCH_REQUEST)
    return BatchRequest(
        prefix=folder,
        fields=spec,
        max_failures=body.get("max_failures"),
        webhook=body.get("webhook"),
        source=keys.INBOX_BATCHES if listed is not None else f"{keys.INBOX_BATCHES}{keys.plain_path(folder)}/",
        keys=tuple(listed) if listed is not None else None,
    )
