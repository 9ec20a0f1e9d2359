"""Every object key the service writes or reads, one function per kind: no key is spelled anywhere else.

In the **data store** (tenants' videos): ``inbox/`` (videos come in: uploads and dropped files),
``datasets/<owner>/`` (a tenant's own space: batches list their inputs there; the trigger never
looks in it) and ``outbox/`` (outputs go out; a batch's under ``outbox/batches/``). In the
**system store** (never served as files): ``logs/``, ``stills/``, ``work/`` (a job's finished
chunk segments), ``models/`` and ``pictures/`` (the catalogue's files, by content hash),
``gallery/`` (the built-in styles' thumbnails), ``inbox-batches/`` (receipts of dropped batch
requests) and ``webhooks/`` (deliveries not made yet, and
those given up on).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from restyle.errors import Invalid

INBOX = "inbox/"
INBOX_BATCHES = "inbox/batches/"  # folders and lists dropped as batches: the trigger makes no single jobs here
BATCH_REQUEST = ".batch.json"  # a dropped batch's request: photos.batch.json makes the folder photos/ a batch
OUTBOX = "outbox/"
DATASETS = "datasets/"
PICTURES = "pictures/"


# -- the data store ------------------------------------------------------------------------------


def inbox(owner: str, filename: str) -> str:
    """A fresh key for an upload of ``owner``'s: their folder, a random prefix, the file's name made safe."""
    return f"{inbox_of(owner)}{uuid.uuid4().hex[:8]}-{safe_name(filename)}"


def shown_name(key: str) -> str:
    """The name a person gave the file at ``key``: an upload's name without the random prefix of :func:`inbox`."""
    name = key.rsplit("/", 1)[-1]
    if key.startswith(INBOX) and key.count("/") == 2 and re.fullmatch(r"[0-9a-f]{8}-.+", name):
        return name[9:]
    return name


def inbox_of(owner: str) -> str:
    """The inbox folder of ``owner``'s uploaded videos."""
    return f"{INBOX}{safe_name(owner)}/"


def output(job_id: str, name: str) -> str:
    return f"{job_outbox(job_id)}{name}"


def job_outbox(job_id: str) -> str:
    """The folder of a single job's output and summary."""
    return f"{OUTBOX}{job_id}/"


def dataset(owner: str, prefix: str) -> str:
    """The key prefix of ``prefix`` in ``owner``'s own space (``datasets/<owner>/<prefix>/``): Invalid for a
    prefix that could leave it. An empty prefix is the whole space."""
    inside = plain_path(prefix, "prefix")
    return f"{DATASETS}{owner_folder(owner)}/" + (f"{inside}/" if inside else "")


def plain_path(path: str, what: str = "name") -> str:
    """``path`` as folders and a name under a root ("" for none): Invalid for one that could leave it."""
    parts = [part for part in path.replace("\\", "/").strip().strip("/").split("/") if part]
    if any(part in (".", "..") or re.search(r"[\x00-\x1f\x7f]", part) for part in parts):
        raise Invalid(f"{what} {path[:80]!r} must be a plain path inside your space (no '..', no control characters)")
    inside = "/".join(parts)
    if len(inside) > 300:
        raise Invalid(f"a {what} is at most 300 characters")
    return inside


def batch_output(owner: str, source: str, fingerprint: str) -> str:
    """Where a batch's outputs and manifest go: one folder per owner, source prefix and JobSpec fingerprint,
    so the same batch run again finds its outputs where it left them (and reuses them)."""
    name = safe_name(source.rstrip("/").rsplit("/", 1)[-1] or "space")[:40]
    digest = hashlib.sha256(f"{source}\n{fingerprint}".encode()).hexdigest()[:12]
    return f"{OUTBOX}batches/{owner_folder(owner)}/{name}-{digest}/"


def summary(job_id: str) -> str:
    """A job's end in JSON (what its webhook receives), beside its output; written whether or not it names one."""
    return f"{job_outbox(job_id)}summary.json"


def is_inbox(key: str) -> bool:
    return key.startswith(INBOX)


def is_inbox_batch(key: str) -> bool:
    return key.startswith(INBOX_BATCHES)


def inbox_batch_receipt(key: str, etag: str) -> str:
    """In the system store: what became of a dropped batch request (its batch, or why it was refused)."""
    return f"inbox-batches/{hashlib.sha256(f'{key}|{etag}'.encode()).hexdigest()[:24]}.json"


def is_output(key: str) -> bool:
    return key.startswith(OUTBOX)


# -- the system store ----------------------------------------------------------------------------


def log(job_id: str) -> str:
    return f"logs/{job_id}.jsonl"


def still(job_id: str, which: str) -> str:
    """``which`` is ``before`` or ``after``."""
    return f"{stills(job_id)}{which}.jpg"


def stills(job_id: str) -> str:
    """The folder of a job's stills."""
    return f"stills/{job_id}/"


def work(job_id: str) -> str:
    """The folder of a job's finished chunk segments."""
    return f"work/{job_id}"


def unit_work(job_id: str, seq: int) -> str:
    """The folder of the finished chunk segments of one video item of a batch unit."""
    return f"work/{job_id}/{seq}"


WEBHOOKS_PENDING = "webhooks/pending/"


def webhook_pending(message_id: str) -> str:
    """A delivery still to be made (tried again until it lands or its retries run out)."""
    return f"{WEBHOOKS_PENDING}{message_id}.json"


def webhook_failed(message_id: str) -> str:
    """A delivery given up on, kept for an admin to read."""
    return f"webhooks/failed/{message_id}.json"


def model(sha256: str) -> str:
    return f"models/{sha256}.onnx"


def picture(owner: str, sha256: str) -> str:
    return f"{pictures_of(owner)}{sha256}"


def pictures_of(owner: str) -> str:
    """The folder of ``owner``'s pictures: a job may use a picture only from its owner's."""
    return f"{PICTURES}{owner_folder(owner)}/"


def thumbnail(style: int) -> str:
    return f"gallery/styles/{style}.jpg"


# -- names made safe for a key -------------------------------------------------------------------


def safe_name(filename: str) -> str:
    """A file name reduced to what is safe in a key: no folders, no odd characters, not too long."""
    name = Path(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "video"
    stem, dot, suffix = name.rpartition(".")
    return (stem[:80] + dot + suffix[:8]) if dot else name[:80]


def owner_folder(owner: str) -> str:
    """A principal's name as one safe key segment."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", owner).strip("._") or "_"  # '@': the dropped files' owner, no token's name
