"""Every object key the service writes or reads, one function per kind: no key is spelled anywhere else.

In the **data store** (tenants' videos): ``inbox/`` (videos come in: uploads and dropped files)
and ``outbox/`` (outputs go out). In the **system store** (never served as files): ``logs/``,
``stills/``, ``work/`` (a job's finished chunk segments), ``models/`` and ``pictures/`` (the
catalogue's files, by content hash), ``gallery/`` (the built-in styles' thumbnails) and ``webhooks/``
(deliveries not made yet, and those given up on).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

INBOX = "inbox/"
OUTBOX = "outbox/"
PICTURES = "pictures/"


# -- the data store ------------------------------------------------------------------------------


def inbox(owner: str, filename: str) -> str:
    """A fresh key for an upload of ``owner``'s: their folder, a random prefix, the file's name made safe."""
    return f"{INBOX}{safe_name(owner)}/{uuid.uuid4().hex[:8]}-{safe_name(filename)}"


def output(job_id: str, name: str) -> str:
    return f"{OUTBOX}{job_id}/{name}"


def summary(job_id: str) -> str:
    """A job's end in JSON (what its webhook receives), beside its output; written whether or not it names one."""
    return f"{OUTBOX}{job_id}/summary.json"


def is_inbox(key: str) -> bool:
    return key.startswith(INBOX)


def is_output(key: str) -> bool:
    return key.startswith(OUTBOX)


# -- the system store ----------------------------------------------------------------------------


def log(job_id: str) -> str:
    return f"logs/{job_id}.jsonl"


def still(job_id: str, which: str) -> str:
    """``which`` is ``before`` or ``after``."""
    return f"stills/{job_id}/{which}.jpg"


def work(job_id: str) -> str:
    """The folder of a job's finished chunk segments."""
    return f"work/{job_id}"


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
