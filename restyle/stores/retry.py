"""Waiting out a server that is briefly away (restarting, failing over): one backoff for every store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("restyle")

T = TypeVar("T")
FIRST_DELAY, MAX_DELAY = 0.5, 5.0  # seconds; doubled after each try


def wait_out(call: Callable[[], T], *, transient: Callable[[BaseException], bool], seconds: float, what: str) -> T:
    """``call()``, tried again with backoff while it fails in a way ``transient`` accepts, for up to ``seconds``.

    Any other failure, or a transient one past the deadline, is raised as it is.
    """
    deadline = time.monotonic() + seconds
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay >= deadline:
                raise
            log.warning("%s unreachable (%s); trying again in %.1f s", what, str(exc).splitlines()[0], delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
