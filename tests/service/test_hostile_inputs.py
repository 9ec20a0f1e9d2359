"""The hostile-input corpus against a running service: every case ends with a reason or a correct output,
the service keeps answering, the good jobs around them succeed, and a poison job goes dead instead of looping."""

import threading
import time

import httpx
import pytest

from restyle.client.client import Client
from restyle.stores.jobs import JobStore
from testing.corpus import CASES, CORPUS_MAX_FRAMES, make_corpus
from tests.conftest import decode_frames, duration_s, packets

pytestmark = pytest.mark.slow

ENDED = ("succeeded", "failed", "dead", "cancelled")


class HealthWatch:
    """Polls /healthz every 0.2 s from a thread; counts the answers that were not 200."""

    def __init__(self, url: str):
        self.url, self.ok, self.bad = url, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self._stop.wait(0.2):
                try:
                    status = http.get(f"{self.url}/healthz").status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                if status == 200:
                    self.ok += 1
                else:
                    self.bad.append(status)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_every_hostile_input_ends_with_a_reason_or_a_correct_output(start_service, clips, tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    service = start_service(
        {"RESTYLE_MAX_FRAMES": str(CORPUS_MAX_FRAMES), "RESTYLE_SUBMIT_RATE_PER_MINUTE": "0"}, local_workers=2
    )
    client = Client(service.url, service.token)
    health = HealthWatch(service.url)

    first = client.submit(clips["pal"], style="7")  # good jobs before and after the corpus
    jobs: dict[str, dict] = {}
    for case in CASES:
        if case.name == "zero bytes":  # the API refuses an empty upload; dropped in the inbox it becomes a job
            with pytest.raises(Exception, match="empty"):
                client.submit(corpus[case.name])
            (service.home / "data" / "inbox").mkdir(parents=True, exist_ok=True)
            corpus[case.name].rename(service.home / "data" / "inbox" / case.file)
            continue
        jobs[case.name] = client.submit(corpus[case.name], style="7")
    last = client.submit(clips["ntsc"], style="7")

    # A poison message: a job whose parameters no worker can use. It must fail its attempts and go dead, once.
    store = JobStore(f"sqlite:///{service.home / 'jobs.db'}")
    poison, _ = store.create(
        "mallory", "elsewhere/poison.mp4", "etag-1", {"spec": {"strength": "lots"}}, max_attempts=2
    )
    service.home.joinpath("data", "elsewhere").mkdir(parents=True, exist_ok=True)
    service.home.joinpath("data", "elsewhere", "poison.mp4").write_bytes(clips["silent"].read_bytes())

    deadline = time.monotonic() + 30
    # the inbox drop's job (the refused upload of the same name stays a cancelled job of admin's)
    while not (dropped := [j for j in client.jobs() if (j["input"], j["owner"]) == ("zero.mp4", "@inbox")]):
        assert time.monotonic() < deadline, "the dropped zero-byte file made no job in 30 s"
        time.sleep(0.3)
    assert len(dropped) == 1
    jobs["zero bytes"] = dropped[0]
    ended = {name: service.wait_for(job["id"], timeout=300) for name, job in jobs.items()}
    health.stop()

    for case in CASES:
        job = ended[case.name]
        if case.fails:
            assert job["state"] == "failed", (case.name, job)
            assert case.fails in job["reason"], (case.name, job["reason"])
            assert job["attempts"] == 1, (case.name, job)  # bad input is not retried
            continue
        assert job["state"] == "succeeded", (case.name, job)
        output = tmp_path / f"out-{case.file}"
        client.download(job["id"], output)
        source = corpus[case.name]
        frames = len(decode_frames(output)[0])
        if case.frames == -1:
            assert 0 < frames < len(packets(source, "video"))  # its damaged packets' frames are missing, and said so
            assert "could be decoded" in " ".join(job["figures"]["notes"])
        else:
            assert frames == case.frames, case.name
        assert duration_s(output) == pytest.approx(duration_s(source), abs=0.05), case.name
        assert packets(output, "audio") == packets(source, "audio"), case.name

    tracks = tmp_path / "out-tracks.mkv"
    import av

    with av.open(str(tracks)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "audio", "subtitle", "video"]

    for good in (first, last):
        assert service.wait_for(good["id"])["state"] == "succeeded"
    dead = service.wait_for(poison.id, timeout=120)
    assert dead["state"] == "dead" and dead["attempts"] == 2 and "gave up after 2 attempts" in dead["reason"], dead
    time.sleep(2)  # a dead letter stays dead: no worker takes it again
    assert client.job(poison.id)["attempts"] == 2
    assert health.ok >= 5 and health.bad == [], health.bad  # answered all along
