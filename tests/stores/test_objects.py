"""Object stores, local folder and a real S3 server: the same behaviour, and no way out of the root."""

import uuid

import pytest

from restyle.config import Settings
from restyle.stores.objects import BadKey, StoreError, check_key, open_store
from tests.conftest import s3_settings


@pytest.fixture(params=["folder", "s3"])
def store(request, tmp_path):
    if request.param == "folder":
        return open_store(str(tmp_path / "store"), Settings(home=tmp_path))
    seaweedfs = request.getfixturevalue("seaweedfs")
    settings = Settings(home=tmp_path, **s3_settings(seaweedfs))
    return open_store(f"s3://data/t-{uuid.uuid4().hex[:8]}", settings)


def test_put_get_list_and_etags(store, tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"first version")
    first = store.put_file(source, "inbox/a.mp4")
    store.put_bytes(b"other", "inbox/sub/b.mp4")
    assert [o.key for o in store.list("inbox/")] == ["inbox/a.mp4", "inbox/sub/b.mp4"]
    assert store.get_bytes("inbox/a.mp4") == b"first version"
    assert store.exists("inbox/a.mp4") and not store.exists("inbox/none.mp4")
    source.write_bytes(b"second version, longer")
    second = store.put_file(source, "inbox/a.mp4")
    assert second.etag != first.etag  # a new version of the object is a new job
    target = tmp_path / "back.bin"
    store.get_file("inbox/a.mp4", target)
    assert target.read_bytes() == b"second version, longer"
    store.delete("inbox", recursive=True)
    assert store.list("inbox/") == []


def test_walk_streams_every_object_under_a_prefix_in_key_order_with_the_etags_info_gives(store):
    names = ["d/a.jpg", "d/b/c.mp4", "d/b/d/e.png", "d/c.txt", "dx/outside.jpg"]
    for name in reversed(names):
        store.put_bytes(name.encode(), name)
    walked = list(store.walk("d/"))
    assert [o.key for o in walked] == names[:4]
    assert [(o.size, o.etag) for o in walked] == [(store.info(o.key).size, store.info(o.key).etag) for o in walked]
    assert list(store.walk("nothing/")) == [] and [o.key for o in store.walk("d/b")] == ["d/b/c.mp4", "d/b/d/e.png"]


def test_a_missing_object_is_a_store_error(store, tmp_path):
    with pytest.raises(StoreError, match="no object"):
        store.get_file("inbox/none.mp4", tmp_path / "x")


@pytest.mark.parametrize(
    "key",
    [
        "../escape.mp4",
        "inbox/../../etc/passwd",
        "/etc/passwd",
        "inbox/a\x00b.mp4",
        "a" * 600,
        "",
        "inbox/",
        "inbox\\..\\x",
        "inbox/./a.mp4",
        "inbox/\nx.mp4",
    ],
)
def test_hostile_keys_are_refused(store, key):
    with pytest.raises(BadKey):
        check_key(key)
    with pytest.raises(BadKey):
        store.put_bytes(b"x", key)


def test_s3_presigned_links_expire(seaweedfs, tmp_path):
    import time

    import httpx

    settings = Settings(home=tmp_path, **s3_settings(seaweedfs))
    store = open_store("s3://data/presign", settings)
    store.put_bytes(b"payload", "outbox/x.mp4")
    assert httpx.get(store.presign("outbox/x.mp4", 60)).content == b"payload"
    short = store.presign("outbox/x.mp4", 1)
    time.sleep(2.5)
    assert httpx.get(short).status_code == 403


def test_ffmpeg_reads_a_presigned_link_so_remote_workers_need_no_copy(seaweedfs, tmp_path, clips):
    import av

    from tests.conftest import decode_frames

    store = open_store("s3://data/readable", Settings(home=tmp_path, **s3_settings(seaweedfs)))
    store.put_file(clips["pal"], "inbox/pal.mp4")
    with av.open(store.presign("inbox/pal.mp4", 600)) as container:
        container.seek(container.streams.video[0].duration // 2, stream=container.streams.video[0])  # ranged reads
        assert sum(1 for _ in container.decode(video=0)) > 0
    with av.open(store.presign("inbox/pal.mp4", 600)) as container:
        assert len(list(container.decode(video=0))) == len(decode_frames(clips["pal"])[0])
