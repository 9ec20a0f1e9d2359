"""Webhooks: a job's end POSTed to the URL it named, signed as Standard Webhooks says, to a real receiver on
127.0.0.1 that checks every signature; retried while the receiver is down; a replay carries the same id; the
door refuses internal hosts; the summary lands in the outbox whether or not a webhook is named."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook, WebhookVerificationError

from restyle.config import Settings
from restyle.errors import Invalid
from restyle.service import keys, notifier
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context
from restyle.service.http.app import create_app
from restyle.service.notifier import Notifier
from restyle.service.specs import sidecar_params
from restyle.service.webhooks import check_url, notify, target, tenant_secret
from restyle.stores.jobs import JobParams
from testing.servers import free_port
from testing.webhooks import Receiver
from tests.service.test_api import ALICE, BOB, ROOT, auth

LOCAL = "127.0.0.1"  # the tests' receivers live here: the service must be told it may reach it


def wait_until(what, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


# -- the door --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/hook", "internal address"),
        ("http://localhost:9/hook", "localhost (127.0.0.1) is an internal address"),
        ("http://[::1]/hook", "internal address"),
        ("http://[::ffff:127.0.0.1]/hook", "internal address"),
        ("http://10.1.2.3/hook", "internal address"),
        ("http://192.168.0.10/hook", "internal address"),
        ("http://169.254.169.254/latest/meta-data", "internal address"),
        ("http://100.64.0.1/", "internal address"),
        ("http://224.0.0.1/", "internal address"),
        ("http://0.0.0.0:80/", "internal address"),
        ("http://[fe80::1]/", "internal address"),
        ("http://[fd00::1]/", "internal address"),
        ("ftp://8.8.8.8/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("hooks.example.com/x", "http:// or https://"),
        ("https://user:pass@8.8.8.8/hook", "credentials"),
        ("https://token@8.8.8.8/hook", "credentials"),
        ("https://8.8.8.8/" + "a" * 2000, "over 2000 characters"),
        ("https://8.8.8.8/a b", "spaces or control characters"),
        ("https://8.8.8.8:99999/", "not a URL"),
        ("https:///path", "no host"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("", "must not be empty"),
        (42, "must be a URL"),
    ],
)
def test_the_door_refuses_what_a_webhook_may_not_be(url, reason):
    with pytest.raises(Invalid) as refused:
        check_url(url, Settings())
    assert reason in str(refused.value).replace("(::1)", "(127.0.0.1)")  # localhost may resolve to either


def test_public_addresses_pass_and_the_admin_list_decides_alone():
    assert check_url(" https://8.8.8.8/hook?token=x ", Settings()) == "https://8.8.8.8/hook?token=x"
    listed = Settings(webhook_allowed_hosts=f"{LOCAL}, *.corp.internal, 10.9.0.0/16")
    assert check_url("http://127.0.0.1:9/hook", listed)
    assert check_url("http://10.9.3.4/hook", listed)
    with pytest.raises(Invalid, match="not among the hosts this service allows"):
        check_url("https://8.8.8.8/hook", listed)  # public, but not listed
    with pytest.raises(Invalid, match="not among the hosts"):
        check_url("http://10.8.0.1/hook", listed)
    # A name is connected to by the address it was checked by, with its own name in Host.
    where = target("http://localhost:8123/a?b=c", Settings(webhook_allowed_hosts="127.0.0.1,::1"))
    assert where.connect_url in ("http://127.0.0.1:8123/a?b=c", "http://[::1]:8123/a?b=c")
    assert where.host_header == "localhost:8123"


@pytest.fixture()
def api(tmp_path):
    settings = Settings(home=tmp_path / "home", tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}")
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_api_door_refuses_an_internal_host_with_a_422_and_a_reason(api, clips):
    with open(clips["silent"], "rb") as video:
        response = api.post(
            "/api/jobs",
            files={"file": ("a.mp4", video, "video/mp4")},
            data={"style": "7", "webhook": "http://127.0.0.1:9/hook"},
            headers=auth(ALICE),
        )
    assert response.status_code == 422 and "internal address" in response.json()["detail"], response.text
    response = api.post(
        "/api/uploads",
        json={"filename": "a.mp4", "style": "7", "webhook": "https://user:pw@8.8.8.8/"},
        headers=auth(ALICE),
    )
    assert response.status_code == 422 and "credentials" in response.json()["detail"], response.text
    assert api.get("/api/jobs", headers=auth(ROOT)).json() == []  # nothing was made


def test_a_webhook_is_stored_with_the_submission_not_the_spec(api):
    response = api.post(
        "/api/uploads",
        json={"filename": "a.mp4", "style": "7", "webhook": "https://8.8.8.8/hook"},
        headers=auth(ALICE),
    )
    assert response.status_code == 201, response.text
    job = response.json()["job"]
    assert job["webhook"] == "https://8.8.8.8/hook" and "webhook" not in job["spec"]
    stored = api.app.state.context.jobs.get(job["id"]).params
    assert stored.webhook == "https://8.8.8.8/hook" and "webhook" not in stored.spec.model_dump()


def test_a_sidecar_names_a_webhook_too(tmp_path):
    context = Context(Settings(home=tmp_path, webhook_allowed_hosts=LOCAL))
    params = sidecar_params(
        context, Catalogue(context), "@inbox", "clip.json", b'{"style": "3", "webhook": "http://127.0.0.1:9/h"}', None
    )
    assert params.webhook == "http://127.0.0.1:9/h" and params.spec.style == "3"
    with pytest.raises(Invalid, match="sidecar clip.json: webhook host 10.0.0.1 is not among"):
        sidecar_params(context, Catalogue(context), "@inbox", "clip.json", b'{"webhook": "http://10.0.0.1/"}', None)


def test_each_tenant_reads_its_own_secret(api):
    alice = api.get("/api/webhook-secret", headers=auth(ALICE)).json()
    bob = api.get("/api/webhook-secret", headers=auth(BOB)).json()
    assert alice["owner"] == "alice" and alice["secret"].startswith("whsec_") and alice["secret"] != bob["secret"]
    assert len(base64.b64decode(alice["secret"].removeprefix("whsec_"))) == 32
    assert api.get("/api/webhook-secret", params={"owner": "bob"}, headers=auth(ALICE)).status_code == 403
    assert api.get("/api/webhook-secret", params={"owner": "alice"}, headers=auth(ROOT)).json() == alice
    assert api.get("/api/webhook-secret").status_code == 401
    # The same secret after a restart: it is derived from the link-signing key kept in home.
    assert tenant_secret(Context(api.app.state.context.settings), "alice") == alice["secret"]


# -- the notifier, in process ------------------------------------------------------------------------


@pytest.fixture()
def context(tmp_path, monkeypatch):
    monkeypatch.setattr(notifier, "SETTLE_SECONDS", 0.0)  # no worker writes these jobs' logs: no need to wait
    return Context(
        Settings(home=tmp_path, webhook_allowed_hosts=LOCAL, webhook_backoff_seconds=0.05, webhook_retries=3)
    )


def cancelled_job(context: Context, webhook: str | None):
    job, _ = context.jobs.create("alice", keys.inbox("alice", "clip.mp4"), "etag1", JobParams(webhook=webhook))
    context.jobs.cancel(job.id)  # ends at once: a queued job's end is the API's, with no worker at all
    return job


def drive(notice: Notifier, until, timeout: float = 20.0):
    """The notifier's loop, one turn at a time, until ``until()``."""

    def turn():
        notice.announce_ends()
        notice.load_pending()
        notice.deliver_due()
        return until()

    return wait_until(turn, timeout)


def test_a_lost_answer_brings_a_replay_with_the_same_id_which_the_receiver_drops(context):
    receiver = Receiver(tenant_secret(context, "alice"), lose_answers=1).start()
    try:
        job = cancelled_job(context, receiver.url)
        notice = Notifier(context)
        drive(notice, lambda: len(receiver.received) >= 2)
        first, second = receiver.received[:2]
        assert first.verified and second.verified and (first.status, second.status) == (503, 200)
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{job.id}"
        assert first.body == second.body  # the same bytes, signed again at each attempt's own timestamp
        assert len(receiver.acted_on) == 1  # the replay was dropped
        event = receiver.acted_on[0]
        assert event["type"] == "job.cancelled" and event["data"]["job"] == job.id
        assert event["data"]["state"] == "cancelled" and event["data"]["reason"] == "cancelled before it started"
        assert event["data"]["finished_at"].endswith("Z") and event["timestamp"].endswith("Z")
        # The summary sits in the outbox, the same JSON the receiver got.
        assert context.data.get_bytes(keys.summary(job.id)) == first.body.decode().encode()
        # The receiver holds the replay before the notifier has read its answer and logged it.
        wait_until(lambda: len(context.system.get_bytes(keys.log(job.id)).splitlines()) >= 2)
        log = [json.loads(line) for line in context.system.get_bytes(keys.log(job.id)).decode().splitlines()]
        assert [(e["event"], e.get("status") or e.get("error")) for e in log] == [
            ("webhook failed", "status 503"),
            ("webhook delivered", "status 200"),
        ]
        wait_until(lambda: context.system.list(keys.WEBHOOKS_PENDING) == [])
        # A restart announces nothing again: the summary in the outbox says the end was announced.
        again = Notifier(context)
        assert again.announce_ends() == 0 and again._due == {}
        time.sleep(0.2)
        assert len(receiver.received) == 2
    finally:
        receiver.stop()


def test_a_receiver_that_never_comes_up_is_given_up_on_and_recorded(context):
    job = cancelled_job(context, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens there
    notice = Notifier(context)

    def given_up() -> bool:  # the failed record, and the log line written after it (a race in CI, once)
        logged = context.system.exists(keys.log(job.id)) and context.system.get_bytes(keys.log(job.id))
        return bool(context.system.list("webhooks/failed/")) and b"webhook given up" in (logged or b"")

    drive(notice, given_up)
    log = [json.loads(line) for line in context.system.get_bytes(keys.log(job.id)).decode().splitlines()]
    assert [e["event"] for e in log] == ["webhook failed"] * 3 + ["webhook given up"]
    assert all("ConnectError" in e["error"] for e in log) and [e["attempt"] for e in log] == [1, 2, 3, 4]
    assert [e.get("retry_in") for e in log[:3]] == [0.05, 0.1, 0.2]  # doubling
    assert context.system.list(keys.WEBHOOKS_PENDING) == []
    assert context.data.exists(keys.summary(job.id))


def test_a_job_without_a_webhook_still_gets_its_summary(context):
    job = cancelled_job(context, None)
    notice = Notifier(context)
    assert notice.announce_ends() == 1 and notice._due == {}
    summary = json.loads(context.data.get_bytes(keys.summary(job.id)))
    assert summary["type"] == "job.cancelled" and summary["data"]["job"] == job.id
    assert context.system.list(keys.WEBHOOKS_PENDING) == []


def test_notify_from_another_process_is_delivered_by_the_notifier(context):
    """A batch's end (the lead's path): notify() records the delivery; a notifier elsewhere makes it."""
    receiver = Receiver(tenant_secret(context, "alice")).start()
    try:
        summary = {"batch": "b1", "items": 3, "failed": 0}
        delivery = notify(context, "alice", "batch.succeeded", summary, receiver.url, message_id="msg_b1")
        assert context.system.exists(keys.webhook_pending("msg_b1")) and delivery.id == "msg_b1"
        drive(Notifier(context), lambda: receiver.acted_on)
        assert receiver.acted_on[0]["type"] == "batch.succeeded" and receiver.acted_on[0]["data"] == summary
        # Another tenant's secret does not verify it.
        wrong = Webhook(tenant_secret(context, "bob"))
        received = receiver.received[0]
        with pytest.raises(WebhookVerificationError):
            wrong.verify(received.body, received.headers)
    finally:
        receiver.stop()


# -- the whole service ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_with_a_webhook_end_to_end_receiver_down_at_first(start_service, clips):
    service = start_service(
        {
            "RESTYLE_WEBHOOK_ALLOWED_HOSTS": LOCAL,
            "RESTYLE_WEBHOOK_BACKOFF_SECONDS": "0.3",
            "RESTYLE_WEBHOOK_RETRIES": "8",
        }
    )
    secret = subprocess.run(
        [sys.executable, "-m", "restyle.cli", "webhook-secret", "--server", service.url, "--token", service.token],
        capture_output=True,
        text=True,
        timeout=60,
        env=service.env,
    )
    assert secret.returncode == 0, secret.stderr
    receiver = Receiver(secret.stdout.strip(), lose_answers=1)  # not started: the receiver is down
    refused = service.http.post(
        "/api/uploads", json={"filename": "a.mp4", "style": "2", "webhook": "http://10.0.0.7/hook"}
    )
    assert refused.status_code == 422 and "not among the hosts" in refused.json()["detail"]
    submit = subprocess.run(
        [sys.executable, "-m", "restyle.cli", "submit", str(clips["silent"]), "--style", "2"]
        + ["--webhook", receiver.url, "--server", service.url, "--token", service.token],
        capture_output=True,
        text=True,
        timeout=60,
        env=service.env,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    job_id = submit.stdout.split()[1].rstrip(":")
    job = service.wait_for(job_id)
    assert job["state"] == "succeeded" and job["webhook"] == receiver.url, job

    def log_events():
        return [json.loads(line) for line in service.http.get(f"/api/jobs/{job_id}/log").text.splitlines()]

    wait_until(lambda: any(e["event"] == "webhook failed" for e in log_events()), timeout=30)
    receiver.start()  # up now: the next attempt arrives, its answer is lost (503), the replay is dropped
    try:
        wait_until(lambda: any(e["event"] == "webhook delivered" for e in log_events()), timeout=60)
        assert all(r.verified for r in receiver.received) and len(receiver.received) == 2
        assert {r.headers["webhook-id"] for r in receiver.received} == {f"msg_{job_id}"}
        (event,) = receiver.acted_on
        assert event["type"] == "job.succeeded" and event["data"]["job"] == job_id
        data = event["data"]
        assert data["state"] == "succeeded" and data["reason"] is None and data["frames"] == 48
        assert data["output"].startswith(f"outbox/{job_id}/") and data["input"] == job["input"]
        assert data["label"] == job["model"] and data["finished_at"].endswith("Z")
        with pytest.raises(WebhookVerificationError):  # a wrong secret does not verify it
            Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(
                receiver.received[0].body, receiver.received[0].headers
            )
        events = [e["event"] for e in log_events()]  # the worker's lines kept, the deliveries' after them
        assert events[0] == "claimed" and events.index("succeeded") < events.index("webhook failed")
        attempts = [e for e in log_events() if e["event"].startswith("webhook")]
        assert "ConnectError" in attempts[0]["error"] and attempts[-2]["error"] == "status 503"
        assert attempts[-1]["status"] == "status 200" and attempts[-1]["url"].endswith("/hooks/restyle?...")
        summary = service.home / "data" / keys.summary(job_id)
        assert summary.read_bytes() == receiver.received[0].body
    finally:
        receiver.stop()
