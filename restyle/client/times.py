"""Times as a person reads them: local time with a relative hint in tables (``2026-12-04 06:12:03 (3 min ago)``),
ISO 8601 with the offset in JSON (``2026-12-04T06:12:03+00:00``), durations in words (``1 min 5 s``).

The API may give a time as Unix seconds or as an ISO 8601 string; both are read."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

TIME_FIELDS = ("created_at", "updated_at", "started_at", "finished_at")


def moment(value: Any) -> datetime | None:
    """A time from the API (Unix seconds, or ISO 8601) as an aware local datetime; None for none or nonsense."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value).astimezone()
        if isinstance(value, str) and value:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return (found if found.tzinfo else found.astimezone()).astimezone()
    except (ValueError, OverflowError, OSError):
        return None
    return None


def iso(value: Any) -> str | None:
    found = moment(value)
    return found.isoformat(timespec="seconds") if found else None


def local(value: Any, now: float | None = None) -> str:
    """``2026-12-04 06:12:03 (3 min ago)``; ``-`` when there is no time."""
    found = moment(value)
    if found is None:
        return "-"
    ago = (time.time() if now is None else now) - found.timestamp()
    hint = "just now" if abs(ago) < 5 else f"{duration(ago)} ago" if ago > 0 else f"in {duration(-ago)}"
    return f"{found.strftime('%Y-%m-%d %H:%M:%S')} ({hint})"


def duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``3 min 5 s`` (under 10 min), ``2 h 5 min``, ``3 d 4 h``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {rest} s" if rest and minutes < 10 else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def with_iso_times(record: dict[str, Any]) -> dict[str, Any]:
    """A job (or batch) as JSON for a person or a script: its times in ISO 8601 rather than Unix seconds."""
    return {key: (iso(value) or value) if key in TIME_FIELDS else value for key, value in record.items()}
