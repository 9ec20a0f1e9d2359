"""The one door for inputs: formats from content, an allowlist of demuxers and protocols, no references followed."""

from __future__ import annotations

import socket
import threading

import pytest

from restyle.config import Settings
from restyle.errors import InputError
from restyle.media.probe import probe
from restyle.media.sample import make_clip
from restyle.media.source import open_input
from testing.corpus import CASES


@pytest.fixture()
def listener():
    """A TCP server on 127.0.0.1 that counts connections: a followed reference would show here."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            seen.append(conn.recv(200).decode(errors="replace"))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", seen
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("list.m3u8", "#EXTM3U\n#EXTINF:1.0,\nclip.mp4\n#EXTINF:1.0,\n{url}/a.ts\n#EXT-X-ENDLIST\n", "HLS playlist"),
        ("innocent.mp4", "\n#EXTM3U\n#EXTINF:1.0,\n{url}/a.ts\n", "HLS playlist"),
        (
            "list.txt",
            "ffconcat version 1.0\nfile clip.mp4\nfile {url}/b.mp4\nfile subfile,,start,0,end,100,,:clip.mp4\n",
            "concat script",
        ),
        (
            "manifest.mpd",
            '<?xml version="1.0"?><MPD><Period><BaseURL>{url}/c</BaseURL></Period></MPD>',
            "DASH manifest",
        ),
        ("bare.mpd", '<MPD type="static"><Period><BaseURL>{url}/c</BaseURL></Period></MPD>', "DASH manifest"),
    ],
)
def test_references_are_refused_and_nothing_they_name_is_read(tmp_path, listener, name, text, reason):
    url, seen = listener
    make_clip(tmp_path / "clip.mp4", width=32, height=18, seconds=0.2, audio=False)  # followed, it would work
    path = tmp_path / name
    path.write_text(text.format(url=url))
    with pytest.raises(InputError, match=reason):
        probe(path, Settings())
    assert seen == []


def test_an_image_pattern_name_is_one_picture_not_a_sequence(tmp_path):
    from PIL import Image

    for n in range(5):
        Image.new("RGB", (16, 16), (n * 40, 0, 0)).save(tmp_path / f"img{n:03d}.png")
    pattern = tmp_path / "img%03d.png"
    Image.new("RGB", (16, 16)).save(pattern, format="PNG")
    with pytest.raises(InputError, match="single picture"):
        probe(pattern, Settings())


def test_the_format_comes_from_the_content_not_the_name(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", width=32, height=18, seconds=0.4, audio=False)
    disguised = tmp_path / "video.m3u8"
    disguised.write_bytes(clip.read_bytes())
    assert probe(disguised, Settings()).frame_count == 10
    with open_input(disguised) as container:
        assert container.format.name.startswith("mov")


def test_ffmpeg_itself_refuses_formats_off_the_list(tmp_path):
    """Past the signatures restyle knows, FFmpeg's format_whitelist still stops any other demuxer."""
    path = tmp_path / "meta.mp4"
    path.write_text(";FFMETADATA1\ntitle=x\n")  # FFmpeg's metadata format: harmless, yet not on the list
    with pytest.raises(InputError, match="not in a container restyle reads"):
        open_input(path)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.fails and any(w in c.fails for w in ("HLS", "concat", "DASH"))], ids=lambda c: c.name
)
def test_corpus_reference_cases_are_refused_at_probe(tmp_path, case):
    path = tmp_path / case.file
    case.make(path)
    with pytest.raises(InputError, match=case.fails):
        probe(path, Settings())


def test_a_presigned_link_is_read_over_http_and_still_follows_no_references(tmp_path):
    """Workers on other machines read the input by URL: http(s) is allowed then, yet a playlist is still refused."""
    import functools
    import http.server

    import av

    from restyle.media.chunks import plan_chunks
    from restyle.media.decode import decode_chunk

    clip = make_clip(tmp_path / "clip.mp4", width=32, height=18, seconds=0.4, audio=False)
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:0.4,\nclip.mp4\n#EXT-X-ENDLIST\n")
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        info = probe(clip, Settings())
        frames = [pts for chunk in plan_chunks(info, 0.2) for pts, _, _ in decode_chunk(f"{base}/clip.mp4", 0, chunk)]
        assert frames == info.frame_pts
        asked.clear()
        with pytest.raises(av.FFmpegError):
            open_input(f"{base}/list.m3u8")
        assert asked == ["/list.m3u8"]  # the playlist itself, never what it names
    finally:
        server.shutdown()
        server.server_close()
