"""Times as the CLI shows them: epochs or ISO 8601 from the API, local time with a hint, ISO in JSON."""

from __future__ import annotations

from datetime import datetime

from restyle.client.times import duration, iso, local, moment, with_iso_times

EPOCH = 1796318839.632  # the value `restyle job` printed raw before


def test_an_epoch_and_its_iso_form_are_the_same_moment():
    as_iso = iso(EPOCH)
    assert as_iso == datetime.fromtimestamp(EPOCH).astimezone().isoformat(timespec="seconds")
    assert moment(as_iso).timestamp() == int(EPOCH)
    assert moment("2026-12-04T06:12:03Z").timestamp() == moment("2026-12-04T06:12:03+00:00").timestamp()
    assert moment(None) is None and moment("soon") is None and moment(True) is None


def test_local_time_carries_a_relative_hint():
    stamp = datetime.fromtimestamp(EPOCH).strftime("%Y-%m-%d %H:%M:%S")
    assert local(EPOCH, now=EPOCH + 185) == f"{stamp} (3 min 5 s ago)"
    assert local(EPOCH, now=EPOCH + 2) == f"{stamp} (just now)"
    assert local(EPOCH, now=EPOCH - 7200) == f"{stamp} (in 2 h)"
    assert local(None) == "-"


def test_durations_in_words():
    assert [duration(s) for s in (0, 45.4, 60, 185, 900, 3600 + 300, 90000)] == [
        "0 s", "45 s", "1 min", "3 min 5 s", "15 min", "1 h 5 min", "1 d 1 h"
    ]  # fmt: skip


def test_json_gets_iso_times_and_keeps_the_rest():
    job = {"id": "j", "created_at": EPOCH, "finished_at": None, "started_at": "2026-12-04T06:12:03+00:00", "n": 1.5}
    shown = with_iso_times(job)
    assert shown["created_at"] == iso(EPOCH) and shown["finished_at"] is None and shown["n"] == 1.5
    assert moment(shown["started_at"]) == moment("2026-12-04T06:12:03+00:00")
