"""Who may do what, and what no one may reach: hostile names and keys, links, rate limits, no shell anywhere."""
import ast
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.api import create_app
from restyle.service.limits import RateLimiter
from restyle.stores.objects import BadKey, check_key, local_link, sign_local
from tests.service.test_api import ALICE, BOB, ROOT, auth, upload

HOSTILE_NAMES = ["../../etc/passwd.mp4", "/etc/shadow.mp4", "..\\..\\windows\\win.mp4", "a\x00b.mp4",
                 "x" * 5000 + ".mp4", "inbox/../../system/logs/x.mp4", "%2e%2e%2fsecret.mp4", "  .mp4", "💥.mp4"]
HOSTILE_KEYS = ["../system/logs/a.jsonl", "/etc/passwd", "inbox/../../x", "inbox/a\x00b.mp4", "inbox/" + "y" * 600,
                "inbox//x.mp4", "inbox/./x.mp4", "inbox\\..\\x.mp4", ""]


@pytest.fixture()
def client(tmp_path):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
                        link_seconds=60, max_upload_bytes=200_000, submit_rate_per_minute=6, submit_burst=3)
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        yield client


def test_hostile_file_names_land_inside_the_callers_inbox(client, clips, tmp_path):
    data = client.app.state.context.data
    root = Path(data.root).resolve()
    client.app.state.context.submissions = RateLimiter(0, 1)  # this test is about names, not rates
    created = 0
    for name in HOSTILE_NAMES:
        with open(clips["silent"], "rb") as video:
            response = client.post("/api/jobs", files={"file": (name, video, "video/mp4")}, headers=auth(ALICE))
        assert response.status_code in (201, 400), (name, response.text)  # stored under a safe name, or refused
        created += response.status_code == 201
    keys = [o.key for o in data.list("inbox/")]
    assert len(keys) == created >= len(HOSTILE_NAMES) - 1
    for key in keys:
        assert key.startswith("inbox/alice/") and check_key(key) == key and len(key) < 200
        assert Path(data.path(key)).resolve().is_relative_to(root / "inbox" / "alice")
    stray = [p for p in tmp_path.rglob("*") if p.is_file() and not p.resolve().is_relative_to(root)]
    assert all(p.parent == tmp_path for p in stray), stray  # only the service's own files (jobs.db, tokens) beside it


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_keys_that_could_escape_are_refused_everywhere(client, key):
    with pytest.raises(BadKey):
        check_key(key)
    expires = int(time.time()) + 60
    signature = sign_local(client.app.state.context.link_secret, key, expires)  # even a correctly signed link
    link = f"/files/{quote(key)}?expires={expires}&signature={signature}"
    assert client.get(link).status_code in (403, 404)
    assert client.put(link + "&method=PUT", content=b"x").status_code in (403, 404, 405)
    events = client.post("/api/events", json={"Records": [{"s3": {"object": {"key": key}}}]}, headers=auth(ROOT))
    assert events.status_code == 200 and events.json() == {"jobs": []}
    assert client.get("/api/jobs", headers=auth(ROOT)).json() == []


def test_the_system_store_is_out_of_reach(client, clips):
    job = upload(client, clips["silent"]).json()
    system = client.app.state.context.system
    system.put_bytes(b'{"event": "secret"}\n', f"logs/{job['id']}.jsonl")
    secret = client.app.state.context.link_secret
    for key in (f"logs/{job['id']}.jsonl", f"work/{job['id']}/x.mp4", f"inbox/alice/{job['input']}"):
        assert client.get(local_link("", secret, key, 60)).status_code == 403  # downloads are outputs only
    assert client.get(f"/api/jobs/{job['id']}/log", headers=auth(ALICE)).status_code == 403
    assert client.get(f"/api/jobs/{job['id']}/log", headers=auth(BOB)).status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/stills/../../logs", headers=auth(ALICE)).status_code == 404
    assert "secret" in client.get(f"/api/jobs/{job['id']}/log", headers=auth(ROOT)).text  # admins only


def test_each_token_is_rate_limited_on_its_own(client, clips):
    clock = [1000.0]
    client.app.state.context.submissions = RateLimiter(6, 3, clock=lambda: clock[0])
    statuses = [upload(client, clips["silent"]).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    refused = upload(client, clips["silent"])
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert "too many submissions" in refused.json()["detail"]
    assert upload(client, clips["silent"], token=BOB).status_code == 201  # bob has his own bucket
    presigned = client.post("/api/uploads", json={"filename": "x.mp4"}, headers=auth(ALICE))
    assert presigned.status_code == 429  # presigned uploads count too
    clock[0] += 10  # one token back after 10 s at 6 a minute
    assert upload(client, clips["silent"]).status_code == 201
    assert upload(client, clips["silent"]).status_code == 429
    assert client.get("/api/jobs", headers=auth(ALICE)).status_code == 200  # reading is never limited


def test_a_signed_upload_over_the_limit_is_refused_while_it_streams(client):
    link = client.post("/api/uploads", json={"filename": "big.mp4"}, headers=auth(ALICE)).json()["upload_url"]
    path = link.split("://", 1)[-1].split("/", 1)[-1]
    def body():
        for _ in range(40):
            yield b"\0" * 10_000  # 400 kB, no length given up front
    assert client.put("/" + path, content=body()).status_code == 413


def test_no_program_is_ever_run_through_a_shell():
    """Every subprocess call in restyle takes an argument list; no os.system, os.popen or shell=True."""
    offences = []
    for path in Path("restyle").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                offences.append(f"{path}:{node.lineno} {name}")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False) for k in node.keywords):
                offences.append(f"{path}:{node.lineno} shell=")
            if name.startswith("subprocess.") and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                offences.append(f"{path}:{node.lineno} a command as one string")
    assert offences == []


def test_the_bucket_refills_at_its_rate():
    clock = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: clock[0])
    assert [limiter.take("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(1.0)
    clock[0] += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock[0] += 0.5
    assert limiter.take("a") == 0.0
    assert RateLimiter(0, 1).take("a") == 0.0  # 0 a minute: no limit
