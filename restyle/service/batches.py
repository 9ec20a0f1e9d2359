"""Batches in the service: many inputs under a prefix of the caller's space, one JobSpec, one manifest.

**Intake** (:func:`submit`): the spec goes through the same door as a job's; the prefix is listed
as it streams (a page at a time), each object becoming an item row, inserted a thousand at a
time. An object whose output is already stored for the same version (etag) and the same spec
fingerprint, by an earlier batch over the same prefix, is ``reused``, not queued. The rest are
queued in **units**: ordinary jobs (``jobs.batch_id``), so leases, retries and kill -9 recovery
are the job store's. The name only groups: an image-looking name joins a unit of up to
``batch_images_per_job`` images, anything else gets a unit of its own; the worker reads each
item's content to decide what it is (:mod:`restyle.service.units`).

**The end** (:func:`settle`): after each unit, after a submission or a cancel (the web face, once it
has answered), and on a worker's sweep, items of units that ended
without their worker (a cancel, attempts used up) end too; when no unit is left, the manifest
(``manifest.jsonl`` and ``manifest.parquet``, and a records model's ``predictions.*``) is written
under the batch's output prefix, and the batch takes its end state, exactly once:
:func:`_on_batch_end` is where its end is announced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from restyle.errors import Conflict, Invalid, RestyleError, TooLarge
from restyle.jobspec import Allowance
from restyle.pipeline.images import WRITABLE_SUFFIXES
from restyle.pipeline.manifest import (
    MANIFEST_JSONL,
    STORED,
    ManifestRow,
    manifest_files,
    predictions_files,
    record_lines,
)
from restyle.service import keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context, Principal
from restyle.service.specs import door_params, is_records
from restyle.service.webhooks import check_url, iso, notify
from restyle.stores.batches import CHUNK_ROWS, STOP_CANCELLED, STOP_STOPPED, Batch, Item
from restyle.stores.objects import ObjectInfo
from restyle.stores.params import JobParams
from restyle.stores.states import BatchState, ItemState, JobState

log = logging.getLogger("restyle.batches")

LISTING_STALE_SECONDS = 600.0  # a listing moves every 1,000 items: one still for this long was cut off
SUMMARY = "summary.json"  # beside the manifest: the batch's end, as its webhook receives it
IMAGE_NAMES = WRITABLE_SUFFIXES | {".gif"}  # a name that looks like a picture joins an images unit (a hint only)


@dataclass(frozen=True)
class BatchRequest:
    """What a door received: the prefix in the caller's space, the JobSpec's fields, the allowance."""

    prefix: str
    fields: dict[str, Any]
    max_failures: str | None = None
    webhook: str | None = None
    # The inbox's door only (a trusted caller): the key prefix the inputs are under, and the keys a dropped list
    # names under it (None: every object under the prefix).
    source: str | None = None
    keys: tuple[str, ...] | None = None


# -- intake ---------------------------------------------------------------------------------------


def submit(context: Context, who: Principal, request: BatchRequest) -> Batch:
    """List the prefix into a batch and queue its units; a Refusal (with the reason) when it cannot be."""
    params = door_params(context, Catalogue(context), who.name, request.fields, admin=who.is_admin)
    max_failures = _allowance(request.max_failures)
    # The batch's end is announced, not its units': the webhook (beside the spec, or in it) stays on the batch.
    webhook = check_url(request.webhook, context.settings) if request.webhook is not None else params.webhook
    params = params.model_copy(update={"webhook": None})
    source = request.source or keys.dataset(who.name, request.prefix)
    fingerprint = hashlib.sha256(json.dumps(params.stored(), sort_keys=True).encode()).hexdigest()[:16]
    output = keys.batch_output(who.name, source, fingerprint)
    store = context.batches
    running = store.running_over(output)
    if running is not None:
        raise Conflict(f"batch {running.id} over the same prefix and spec is still {running.state}")
    batch = store.create(who.name, source, output, params, fingerprint, max_failures, webhook)
    try:
        units = _list_into(context, batch, request)
    except BaseException:
        store.drop(batch.id)
        raise
    store.add_units(batch, units, context.settings.max_attempts)
    log.info("batch %s: %s, %d units", batch.id, source, len(units))
    return store.open(batch.id) or batch  # with nothing queued (all reused) the next settle ends it


def _allowance(text: str | None) -> str | None:
    try:
        allowance = Allowance.parse(text.strip() if isinstance(text, str) and text.strip() else None)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return None if allowance is None else str(allowance)


def _list_into(context: Context, batch: Batch, request: BatchRequest) -> list[tuple[str, str, str]]:
    """Stream the listing into item rows; return the units to queue: (job id, key shown, unique marker)."""
    store, cap, prefix = context.batches, context.settings.max_batch_items, request.prefix
    grouping = _Grouping(batch.id, context.settings.batch_images_per_job)
    stored: set[str] | None = None  # the outputs already under the batch's output prefix, listed once if needed
    seq = 0
    listed = _listed(context, batch, request.keys) if request.keys is not None else context.data.walk(batch.source)
    for chunk in _chunks(listed, CHUNK_ROWS):
        if seq + len(chunk) > cap:
            raise TooLarge(f"prefix {prefix!r} holds over {cap} objects; a batch takes at most RESTYLE_MAX_BATCH_ITEMS")
        earlier = store.stored_before(batch.output, [(info.key, info.etag) for info in chunk])
        if earlier and stored is None:
            stored = {info.key for info in context.data.walk(batch.output)}
        rows = []
        for info in chunk:
            if _hidden(relative(batch, info.key)):
                continue  # as at the CLI's door: a name with a leading dot is no input
            row = {"seq": seq, "input_key": info.key, "size": info.size, "etag": info.etag}
            done = earlier.get((info.key, info.etag))
            if done is not None and done.output_key in (stored or ()):
                row |= _reused(done)
            elif info.size == 0:
                row |= {"state": ItemState.FAILED, "reason": f"{_name(info.key)} is empty"}
            else:
                row |= {"state": ItemState.QUEUED, "job_id": grouping.unit_for(info, seq)}
            rows.append(row)
            seq += 1
        store.add_items(batch.id, rows)
    if seq == 0:
        raise Invalid(
            f"no objects under {prefix!r} in your space ({batch.source}): put the inputs there first, then submit"
        )
    return grouping.units


def _listed(context: Context, batch: Batch, named: tuple[str, ...]) -> Iterator[ObjectInfo]:
    """The objects a dropped list names (under the batch's source), each once, in the list's order."""
    for name in dict.fromkeys(named):
        key = batch.source + keys.plain_path(name, "a listed name")
        try:
            yield context.data.info(key)
        except RestyleError:
            raise Invalid(f"the list names {name!r}, which is not in {batch.source}") from None


def _reused(done: Item) -> dict[str, Any]:
    return {
        "state": ItemState.REUSED,
        "reason": f"stored by batch {done.batch_id}",
        **{name: getattr(done, name) for name in ("kind", "output_key", "frames", "seconds", "runtime", "precision")},
        "node": done.node,
    }


class _Grouping:
    """Items into units: image-looking names a group at a time, anything else on its own."""

    def __init__(self, batch_id: str, images_per_unit: int):
        self.batch_id, self.size = batch_id, images_per_unit
        self.units: list[tuple[str, str, str]] = []
        self._group: str | None = None
        self._filled = 0

    def unit_for(self, info: ObjectInfo, seq: int) -> str:
        image = os.path.splitext(info.key)[1].lower() in IMAGE_NAMES
        if image and self._group is not None and self._filled < self.size:
            self._filled += 1
            return self._group
        job_id = uuid.uuid4().hex[:12]
        self.units.append((job_id, info.key, f"batch:{self.batch_id}:{seq}"))
        self._group, self._filled = (job_id, 1) if image else (self._group, self._filled)
        return job_id


def _chunks(objects: Iterable[ObjectInfo], size: int) -> Iterator[list[ObjectInfo]]:
    iterator = iter(objects)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- naming -----------------------------------------------------------------------------------------


def relative(batch: Batch, key: str) -> str:
    """An input's (or output's) path under the batch's source (or output) prefix."""
    for prefix in (batch.source, batch.output):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _hidden(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/"))


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


# -- the end ----------------------------------------------------------------------------------------


def settle(context: Context, batch_id: str) -> Batch | None:
    """End the items of units that ended without their worker; when no unit is left, write the manifest
    and end the batch (once, whoever gets here first). Returns the batch as it is now."""
    store = context.batches
    for job_id, state, reason in store.unsettled_units(batch_id):
        item_state = ItemState.NOT_RUN if state == JobState.CANCELLED else ItemState.FAILED
        store.end_unit(job_id, item_state, reason or f"its unit {state}")
    batch = store.get(batch_id)
    if batch is None or batch.state != BatchState.RUNNING or store.active_units(batch_id):
        return batch
    if batch.left and store.end_rest(batch_id, ItemState.FAILED, "its work unit was lost; submit the batch again"):
        batch = store.get(batch_id) or batch
    write_manifest(context, batch)
    if store.finish(batch_id, end_state(batch)):
        ended = store.get(batch_id)
        if ended is not None:
            _on_batch_end(context, ended)
            return ended
    return store.get(batch_id)


def sweep(context: Context) -> None:
    """Settle every running batch: a unit may have ended where no worker saw it (attempts used up at a claim);
    fail a batch whose listing stopped moving long ago (the process listing it died)."""
    for batch in context.batches.active(listing_before=time.time() - LISTING_STALE_SECONDS):
        try:
            if batch.state == BatchState.LISTING:
                context.batches.abandon(batch.id, "its listing was cut off (the service stopped); submit it again")
                continue
            settle(context, batch.id)
        except RestyleError as exc:
            log.warning("batch %s not settled: %s", batch.id, exc)


def end_state(batch: Batch) -> BatchState:
    if batch.stop == STOP_CANCELLED:
        return BatchState.CANCELLED
    if batch.stop == STOP_STOPPED:
        return BatchState.STOPPED
    if not batch.failed and not batch.not_run:
        return BatchState.SUCCEEDED
    return BatchState.PARTIAL if batch.succeeded + batch.reused else BatchState.FAILED


def cancel(context: Context, batch: Batch, who: Principal) -> Batch:
    """Stop the batch: its queued units at once, its running ones at their next item or chunk. It ends (its
    manifest written) at the next :func:`settle`."""
    if batch.state not in (BatchState.LISTING, BatchState.RUNNING) or batch.stop:
        raise Conflict(
            f"batch {batch.id} has ended or is ending ({batch.state}{', ' + batch.stop if batch.stop else ''})"
        )
    context.batches.stop(batch.id, STOP_CANCELLED, f"cancelled by {who.name}")
    return context.batches.get(batch.id) or batch


def manifest_row(batch: Batch, item: Item) -> ManifestRow:
    stored = item.state in STORED
    return ManifestRow(
        input=relative(batch, item.input_key),
        size=item.size,
        version=item.etag,
        kind=item.kind,
        state=str(item.state),
        reason=item.reason or "",
        output=relative(batch, item.output_key) if stored and item.output_key else "",
        frames=item.frames,
        seconds=round(item.seconds, 3),
        runtime=item.runtime,
        precision=item.precision,
        node=item.node,
        fingerprint=batch.fingerprint,
    )


def write_manifest(context: Context, batch: Batch) -> None:
    """The manifest under the batch's output prefix; a records model's predictions beside it."""
    items = context.batches.every_item(batch.id)
    for name, data in manifest_files(manifest_row(batch, item) for item in items).items():
        context.data.put_bytes(data, batch.output + name)
    if batch.params is not None and is_records(batch.params):
        for name, data in predictions_files(_predictions(context, batch)).items():
            context.data.put_bytes(data, batch.output + name)


def _predictions(context: Context, batch: Batch) -> Iterator[dict[str, Any]]:
    """A row per image or frame: each stored item's records (its output's lines), its input first."""
    for item in context.batches.every_item(batch.id):
        if item.output_key and item.state in (ItemState.SUCCEEDED, ItemState.REUSED):
            source = relative(batch, item.input_key)
            for line in record_lines(context.data.get_bytes(item.output_key).decode()):
                yield {"input": source} | line


def _on_batch_end(context: Context, batch: Batch) -> None:
    """The one place a batch's end is announced, by whoever ended it: its summary beside its manifest and, when it
    names a webhook, a delivery that ``restyle serve``'s notifier makes (one ``webhook-id`` per batch, so a
    receiver drops a replay). Its units' own ends are not announced (the notifier leaves them to this)."""
    log.info("batch %s %s: %s", batch.id, batch.state, summary(batch))
    notify(
        context,
        batch.owner,
        f"batch.{batch.state}",
        summary(batch),
        batch.webhook,
        key=batch.output + SUMMARY,
        message_id=f"msg_batch_{batch.id}",
    )


def summary(batch: Batch) -> dict[str, Any]:
    """What a person (or a webhook's receiver) needs to know of a batch that ended."""
    return {
        "batch": batch.id,
        "owner": batch.owner,
        "state": str(batch.state),
        "prefix": batch.source.removeprefix(keys.dataset(batch.owner, "")),
        "total": batch.total,
        "succeeded": batch.succeeded,
        "failed": batch.failed,
        "reused": batch.reused,
        "not_run": batch.not_run,
        "frames": batch.frames,
        "reason": batch.reason,
        "output": batch.output,
        "manifest": batch.output + MANIFEST_JSONL,
        "created_at": iso(batch.created_at),
        "finished_at": iso(batch.finished_at),
    }


def label(params: JobParams | None) -> str:
    return "unreadable" if params is None else params.label or params.kind
