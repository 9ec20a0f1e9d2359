"""bench/batch.py's service check: a batch of 100,000 items paged through a real ``restyle serve``'s API.

For each job store (SQLite under a fresh RESTYLE_HOME; PostgreSQL when its programs are installed:
a throwaway cluster on 127.0.0.1, as the tests start one):

* the batch is made with the job store's own interfaces, as the service's intake makes one
  (``BatchStore.create``, ``add_items`` a thousand rows a transaction, ``add_units``, ``open``): a
  running batch whose first 85% ended (1 in 20 failed with a reason, 1 in 20 reused, the rest
  succeeded with their output, frames, runtime and node), then 2% running and 13% queued in
  units of ``batch_images_per_job``; beside it 49 small batches that ended (the list pages have
  a history to show). Its making is timed, not counted;
* ``restyle serve`` is started on 127.0.0.1 with no local workers (``RESTYLE_LOCAL_WORKERS=0``:
  the figures are the API's and the dashboard's alone; nothing scores or ends items meanwhile);
* one client (httpx, one kept-alive connection, the admin's bearer token) sends the requests one
  at a time, each round every kind once in a shuffled order, timed from the request to the last
  byte of the answer; each answer is checked (status 200 and what it must hold: a page's items,
  their state, the walk's every item once). Kinds: the batch; the batches list; the first page of
  items; the next page through the whole batch by the keyset cursor (``after``); the next page
  of the failed items by the cursor; a page of 500 (the API's most) from a random place;
  ``/metrics``; the dashboard's batch page (first, a random deep page, the failed filter) and its
  batches list;
* count, median, p95 and max per kind, and whether every kind's p95 is under 100 ms; the server
  is stopped by its pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from restyle.config import Settings
from restyle.service import keys
from restyle.service.batches import end_state
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context
from restyle.service.specs import door_params
from restyle.stores.batches import CHUNK_ROWS, Batch, BatchStore
from restyle.stores.states import ItemState
from testing.servers import PostgreSQL, free_port, have_postgres, wait_for_port

OWNER = "admin"  # the embedded admin token's principal: the client signs in with it
TARGET_MS = 100.0
PAGE, BIG_PAGE = 100, 500  # the API's default page, and its most
HISTORY = 49  # small ended batches beside the big one
ENDED, RUNNING = 0.85, 0.02  # the big batch's share of ended items, then of running ones (the rest queued)


# -- the batch, made through the store ----------------------------------------------------------------


def item_row(batch: Batch, seq: int, open_from: int, queued_from: int, unit: Callable[[int], str]) -> dict:
    """Item ``seq`` as intake and the workers leave it: ended before ``open_from`` (in the mix of end states,
    with their figures), running up to ``queued_from``, queued after."""
    name = f"d{seq // 1000:03d}/{seq:06d}.png"
    row = {"seq": seq, "input_key": batch.source + name, "size": 600 + seq % 400, "etag": f"{seq:032x}"}
    if seq >= open_from:
        state = ItemState.RUNNING if seq < queued_from else ItemState.QUEUED
        return row | {"state": state, "job_id": unit(seq)}
    if seq % 20 == 3:
        return row | {
            "state": ItemState.FAILED,
            "reason": f"cannot read image {name}: not a picture (its first bytes say text)",
            "job_id": unit(seq),
        }
    done = {
        "kind": "image",
        "output_key": batch.output + name.replace(".png", ".jpg"),
        "frames": 1,
        "seconds": round(0.04 + (seq % 7) / 100, 3),
        "runtime": "openvino",
        "precision": "f32",
        "node": "bench-node",
    }
    if seq % 20 == 11:
        return row | done | {"state": ItemState.REUSED, "reason": "stored by batch 0123456789ab"}
    return row | done | {"state": ItemState.SUCCEEDED, "job_id": unit(seq)}


def make_batch(context: Context, count: int, prefix: str, ended: float = ENDED) -> Batch:
    """A batch of ``count`` items, the first ``ended`` share of them ended (the rest running, then queued), through
    BatchStore's interfaces, as ``batches.submit`` and the workers' ends leave one."""
    store: BatchStore = context.batches
    params = door_params(context, Catalogue(context), OWNER, {"style": "7"})
    fingerprint = hashlib.sha256(json.dumps(params.stored(), sort_keys=True).encode()).hexdigest()[:16]
    source = keys.dataset(OWNER, prefix)
    batch = store.create(OWNER, source, keys.batch_output(OWNER, source, fingerprint), params, fingerprint, "10%")
    per_unit = context.settings.batch_images_per_job
    open_from, queued_from = round(ended * count), round(min(1.0, ended + RUNNING) * count)
    unit_ids: dict[int, str] = {}
    units: list[tuple[str, str, str]] = []

    def unit(seq: int) -> str:
        group = seq // per_unit
        if group not in unit_ids:
            unit_ids[group] = uuid.uuid4().hex[:12]
            if seq >= open_from:  # the open items' units are queued jobs; the ended ones' units are history
                units.append((unit_ids[group], batch.source + f"{seq:06d}", f"batch:{batch.id}:{seq}"))
        return unit_ids[group]

    for start in range(0, count, CHUNK_ROWS):
        seqs = range(start, min(count, start + CHUNK_ROWS))
        rows = [item_row(batch, seq, open_from, queued_from, unit) for seq in seqs]
        store.add_items(batch.id, rows)
    store.add_units(batch, units, context.settings.max_attempts)
    return store.open(batch.id) or batch


def make_history(context: Context, batches: int, items: int) -> None:
    """Small batches that ended (every item ended: no units), each in the end state its items make."""
    for index in range(batches):
        batch = make_batch(context, items, f"history/{index:02d}", ended=1.0)
        context.batches.finish(batch.id, end_state(batch))


# -- the server ------------------------------------------------------------------------------------


def start_server(home: Path, database: str) -> tuple[subprocess.Popen, str, str]:
    """``restyle serve`` on 127.0.0.1 with this home and job store and no local workers: (process, URL, token)."""
    port = free_port()
    env = os.environ | {
        "RESTYLE_HOME": str(home),
        "RESTYLE_HOST": "127.0.0.1",
        "RESTYLE_PORT": str(port),
        "RESTYLE_LOCAL_WORKERS": "0",
        "RESTYLE_DATABASE_URL": database,
    }
    log = home / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "restyle.cli", "serve"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    wait_for_port(port, 60, process, log)
    return process, f"http://127.0.0.1:{port}", (home / "admin.token").read_text().strip()


def stop_server(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


# -- the requests ------------------------------------------------------------------------------------


class Walks:
    """The cursors of the two walks (every item, the failed items), and what each full walk saw."""

    def __init__(self, count: int, failed: int):
        self.count, self.failed = count, failed
        self.reset()

    def reset(self) -> None:
        self.after = {"all": -1, "failed": -1}
        self.seen: dict[str, list[int]] = {"all": [], "failed": []}
        self.full = {"all": 0, "failed": 0}

    def step(self, walk: str, page: dict, state: str | None = None) -> None:
        seqs = [item["seq"] for item in page["items"]]
        if state is not None and any(item["state"] != state for item in page["items"]):
            raise AssertionError(f"the {state} filter answered other states")
        self.seen[walk] += seqs
        if page["next_after"] is None:  # the walk's end: it must have seen every item (of the filter) once
            expected = self.count if walk == "all" else self.failed
            if len(self.seen[walk]) != expected or len(set(self.seen[walk])) != expected:
                raise AssertionError(f"a walk of {walk} items saw {len(self.seen[walk])}, expected {expected}")
            self.seen[walk], self.full[walk] = [], self.full[walk] + 1
            self.after[walk] = -1
        else:
            self.after[walk] = page["next_after"]


def kinds(batch_id: str, count: int, walks: Walks, rng: random.Random) -> dict[str, Callable]:
    """Each kind of request: a function of the client that sends one and checks its answer."""
    api, page = f"/api/batches/{batch_id}", f"/batches/{batch_id}"

    def get(client: httpx.Client, path: str, params: dict | None = None) -> httpx.Response:
        response = client.get(path, params=params)
        if response.status_code != 200:
            raise AssertionError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
        return response

    def items_page(client, walk: str, state: str | None):
        params = {"after": walks.after[walk]} | ({"state": state} if state else {})
        walks.step(walk, get(client, api + "/items", params).json(), state)

    def big_page(client):
        answer = get(client, api + "/items", {"after": rng.randrange(count - BIG_PAGE), "limit": BIG_PAGE}).json()
        expect(len(answer["items"]) == BIG_PAGE, f"{BIG_PAGE} items")

    def html(client, path: str, params: dict | None = None):
        text = get(client, path, params).text
        expect("data-seq=" in text or "data-id=" in text, f"rows ({path})")

    return {
        "API: the batch": lambda c: expect(get(c, api).json()["progress"]["total"] == count, "the batch's total"),
        "API: batches list": lambda c: expect(len(get(c, "/api/batches").json()) == HISTORY + 1, "every batch"),
        "API: items, first page": lambda c: expect(len(get(c, api + "/items").json()["items"]) == PAGE, "a page"),
        "API: items, next page (walk of all)": lambda c: items_page(c, "all", None),
        "API: items failed, next page (walk)": lambda c: items_page(c, "failed", "failed"),
        "API: items, 500 from a random place": big_page,
        "/metrics": lambda c: expect('restyle_batch_items{state="failed"}' in get(c, "/metrics").text, "the gauge"),
        "dashboard: batch page": lambda c: html(c, page),
        "dashboard: batch page, deep": lambda c: html(c, page, {"after": rng.randrange(count - PAGE)}),
        "dashboard: batch page, failed": lambda c: html(c, page, {"state": "failed"}),
        "dashboard: batches list": lambda c: html(c, "/batches"),
    }


def expect(held: bool, what: str) -> None:
    if not held:
        raise AssertionError(f"an answer without {what}")


def time_requests(url: str, token: str, batch_id: str, count: int, failed: int, rounds: int) -> dict[str, list[float]]:
    """``rounds`` rounds, each every kind once in a shuffled order; milliseconds per kind."""
    rng = random.Random(25)
    walks = Walks(count, failed)
    todo = kinds(batch_id, count, walks, rng)
    times: dict[str, list[float]] = {name: [] for name in todo}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for send in todo.values():  # warm-up, not counted: the connection, first imports, SQLite's page cache
            send(client)
        walks.reset()
        for _ in range(rounds):
            order = list(todo)
            rng.shuffle(order)
            for name in order:
                clock = time.perf_counter()
                todo[name](client)
                times[name].append((time.perf_counter() - clock) * 1000)
    print(f"    walks completed: every item {walks.full['all']}x, the failed items {walks.full['failed']}x", flush=True)
    return times


def report(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Count, median, p95 and max per kind, printed as a table; then which kinds miss the target."""
    figures = {}
    print(f"    {'request':40} {'count':>6} {'median':>7} {'p95':>7} {'max':>7}  (ms)  p95 under {TARGET_MS:.0f} ms")
    for name, values in times.items():
        row = {"count": len(values), "median": float(np.median(values)), "p95": float(np.percentile(values, 95))}
        figures[name] = row | {"max": max(values)}
        cells = f"{row['count']:>6} {row['median']:>7.1f} {row['p95']:>7.1f} {max(values):>7.1f}"
        print(f"    {name:40} {cells}        {'met' if row['p95'] < TARGET_MS else 'NOT met'}")
    missed = [name for name, row in figures.items() if row["p95"] >= TARGET_MS]
    print(
        f"    p95 under {TARGET_MS:.0f} ms: "
        + ("met (every kind of request)" if not missed else f"NOT met by {', '.join(missed)}; met by the others"),
        flush=True,
    )
    return figures


# -- one job store, and both ----------------------------------------------------------------------------


def one_store(name: str, database: str, home: Path, count: int, rounds: int) -> dict:
    settings = Settings(home=home, database_url=database)
    context = Context(settings)
    clock = time.perf_counter()
    batch = make_batch(context, count, "bench")
    made = time.perf_counter() - clock
    make_history(context, HISTORY, 100)
    failed = batch.failed
    context.jobs.close()
    print(
        f"\n  {name}: batch {batch.id} of {batch.total:,} items made through BatchStore in {made:.1f} s "
        f"(not counted; {batch.total / made:,.0f} rows/s): {batch.succeeded:,} succeeded, {batch.failed:,} failed, "
        f"{batch.reused:,} reused, {batch.left:,} running or queued; {HISTORY} small ended batches beside it",
        flush=True,
    )
    process, url, token = start_server(home, database)
    try:
        clock = time.perf_counter()
        times = time_requests(url, token, batch.id, count, failed, rounds)
        print(f"    {sum(map(len, times.values())):,} requests in {time.perf_counter() - clock:.0f} s", flush=True)
    finally:
        stop_server(process)
    return {"made_s": made, "requests": report(times)}


def service_check(count: int, rounds: int, databases: list[str]) -> dict:
    """The service check's figures, printed as they come."""
    load = Path("/proc/loadavg").read_text().strip()
    print(
        f"\n## service: a {count:,}-item batch paged through `restyle serve`'s API and dashboard "
        f"({rounds} rounds of every kind)\n  load at its start (/proc/loadavg): {load}",
        flush=True,
    )
    results = {}
    for name in databases:
        with tempfile.TemporaryDirectory(prefix=f"restyle-bench-svc-{name}-") as tmp:
            if name == "sqlite":
                results[name] = one_store(name, "", Path(tmp) / "home", count, rounds)
                continue
            if not have_postgres():
                print("\n  postgresql: not measured (PostgreSQL's initdb is not installed)")
                continue
            server = PostgreSQL(Path(tempfile.mkdtemp(prefix="restyle-bench-pg-")), port=free_port())
            server.start()
            try:
                results[name] = one_store(name, server.url, Path(tmp) / "home", count, rounds)
            finally:
                server.stop()
                shutil.rmtree(server.root, ignore_errors=True)
    print(f"  load at its end (/proc/loadavg): {Path('/proc/loadavg').read_text().strip()}", flush=True)
    return results
