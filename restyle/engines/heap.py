"""A worker's heap under glibc: big frames mapped apart and given back, so that a job's peak is not kept into
the next (the budgets of restyle/engines/sizing.py count one job's working set)."""

from __future__ import annotations

import contextlib
import ctypes
import sys

MMAP_THRESHOLD = 4 * 1024**2  # allocations from this size up get their own mapping, returned to the system when freed
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters
_M_TRIM_THRESHOLD = -1


def bound_heap() -> None:
    """Have big allocations (a 4096x2304 frame is 28 MB) mapped apart and unmapped when freed. glibc's threshold
    otherwise rises to 32 MB after the first such free, and the decode, model and encode threads' arenas keep
    the frames' memory: 0.1 GiB more, kept after a deflickered 4096x2304 chunk, in every job after it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            # Setting the mmap threshold fixes the trim threshold too, at glibc's 128 kB: every free at the heap's
            # top would give its pages back and the next frame fault them in again (a detector's worker spent ~20%
            # more CPU a picture so). Twice the mmap threshold, as glibc's own dynamic rule sets it.
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)


def release_heap() -> None:
    """Give freed heap back to the system. Frames of big pictures (28 MB at 4096x2304) come from glibc's arenas
    once its mmap threshold has risen, and stay there after they are freed: 0.2 GiB kept after a deflickered
    4096x2304 chunk, which the next job's budget does not count."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
            ctypes.CDLL("libc.so.6").malloc_trim(0)
