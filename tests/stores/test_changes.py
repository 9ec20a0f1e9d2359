"""Changes: a local folder store's unchanged folders are not listed again; an S3 store is listed whole."""

import os
import time
from pathlib import Path

from restyle.stores.changes import Changes
from restyle.stores.objects import ObjectStore


def settle(root: Path) -> None:
    """Every file and folder under ``root`` as if written a minute ago."""
    past = time.time() - 60
    for path in [*root.rglob("*"), root]:
        os.utime(path, (past, past))


def keys(changes: Changes) -> list[str]:
    return sorted(info.key for info in changes.look())


def test_only_folders_that_changed_are_listed_again(tmp_path):
    store = ObjectStore(str(tmp_path / "data"))
    for name in ("inbox/a/1.mp4", "inbox/a/2.mp4", "inbox/b/c/3.mp4", "inbox/4.txt"):
        store.put_bytes(b"x", name)
    settle(tmp_path / "data")
    changes = Changes(store, "inbox/", recent_s=5)
    assert keys(changes) == ["inbox/4.txt", "inbox/a/1.mp4", "inbox/a/2.mp4", "inbox/b/c/3.mp4"]
    assert keys(changes) == []  # nothing changed
    store.put_bytes(b"y", "inbox/b/c/5.mp4")  # a new file: its folder changed, just now
    assert keys(changes) == ["inbox/b/c/3.mp4", "inbox/b/c/5.mp4"]
    assert keys(changes) == ["inbox/b/c/3.mp4", "inbox/b/c/5.mp4"]  # changed within recent_s: listed again
    settle(tmp_path / "data/inbox/b/c")
    assert keys(changes) == ["inbox/b/c/3.mp4", "inbox/b/c/5.mp4"]  # its time moved (back): a change all the same
    assert keys(changes) == []  # and now an old one, not listed again
    store.delete("inbox/a/1.mp4")
    (tmp_path / "data/inbox/new").mkdir()
    assert keys(changes) == ["inbox/4.txt", "inbox/a/2.mp4"]  # inbox/ got a folder, a/ lost a file
    settle(tmp_path / "data")
    assert len(keys(changes)) == 4  # every folder's time moved
    assert keys(changes) == []
    changes.again("inbox/a/2.mp4")
    assert keys(changes) == ["inbox/a/2.mp4"]  # asked for again
    changes.everything()
    assert keys(changes) == ["inbox/4.txt", "inbox/a/2.mp4", "inbox/b/c/3.mp4", "inbox/b/c/5.mp4"]


def test_a_missing_prefix_lists_nothing(tmp_path):
    assert keys(Changes(ObjectStore(str(tmp_path / "data")), "inbox/")) == []


def test_an_s3_store_is_listed_whole_every_time(seaweedfs, tmp_path):
    from restyle.config import Settings
    from restyle.stores.objects import open_store
    from tests.conftest import s3_settings

    store = open_store("s3://data/changes", Settings(home=tmp_path, **s3_settings(seaweedfs)))
    store.put_bytes(b"x", "inbox/a/1.mp4")
    changes = Changes(store, "inbox/")
    assert keys(changes) == keys(changes) == ["inbox/a/1.mp4"]
