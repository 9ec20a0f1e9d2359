"""What `restyle submit`, `restyle rerun`, `restyle models ...`, `restyle pictures ...` and
`restyle webhook-secret` do, through the API's client.

The options are declared in restyle/cli.py; each function here takes the parsed arguments
and a :class:`Client`, prints what a person needs, and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from restyle.client.client import Client
from restyle.client.times import duration, local, moment
from restyle.errors import InputError
from restyle.stores.states import ACTIVE, JobState

EXIT_ERROR = 2
# A batch's end as an exit status: the same as `restyle run` on a folder (restyle.pipeline.outcomes.ExitStatus).
BATCH_EXIT = {"succeeded": 0, "partial": 3, "failed": 3, "stopped": 4, "cancelled": 4}


Progress = Callable[[int, int, str], None]  # frames done, frames in all, what else to say (the state, the ETA)


def submit(args: argparse.Namespace, client: Client, on_progress: Progress | None = None) -> int:
    """Upload; with --wait, follow the job (``on_progress``: the CLI's bar) and end with its outcome line."""
    job = client.submit(
        Path(args.video),
        model=args.model,
        style=args.style,
        style_image=args.style_image,
        strength=args.strength,
        deflicker=args.deflicker,
        params=_params(args),
        webhook=args.webhook,
    )
    print(f"job {job['id']}: {job['state']} ({job['model']})")
    return _wait(args, client, job, on_progress)


def rerun(args: argparse.Namespace, client: Client, on_progress: Progress | None = None) -> int:
    """`restyle rerun ID`: a new job of that job's stored video with the spec given; --wait as for submit."""
    fields = {
        "model": args.model,
        "style": args.style,
        "style_image": args.style_image,
        "strength": args.strength,
        "deflicker": args.deflicker,
        "params": _params(args),
        "webhook": args.webhook,
    }
    job = client.rerun(args.id, {name: value for name, value in fields.items() if value is not None})
    print(f"job {job['id']}: {job['state']} ({job['model']}), the video of {args.id} again")
    return _wait(args, client, job, on_progress)


def _params(args: argparse.Namespace) -> dict | None:
    try:
        params = json.loads(args.params) if args.params else None
    except ValueError:
        raise InputError(f"--params takes a JSON object, got {args.params!r}") from None
    if params is not None and not isinstance(params, dict):
        raise InputError(f"--params takes a JSON object, got {args.params!r}")
    return params


def _wait(args: argparse.Namespace, client: Client, job: dict, on_progress: Progress | None) -> int:
    """With --wait: follow ``job`` to its end, print its outcome line, and save its output where -o says."""
    if not args.wait:
        return 0
    job = follow(client, job, on_progress)
    print(describe_job(job))
    if job["state"] != JobState.SUCCEEDED:
        return EXIT_ERROR
    if args.output:
        client.download(job["id"], Path(args.output))
        print(f"wrote {args.output}")
    return 0


def follow(client: Client, job: dict, on_progress: Progress | None = None, every: float = 1.0) -> dict:
    """Poll a job until it ends, telling ``on_progress`` its frames and the service's ETA as they move."""
    while job["state"] in ACTIVE:
        if on_progress is not None:
            progress = job["progress"]
            eta = progress.get("eta_s")
            said = job["state"] + (f", about {duration(max(eta, 1))} left" if eta is not None else "")
            on_progress(progress.get("frames_done") or 0, progress.get("frames_total") or 0, said)
        time.sleep(every)
        job = client.job(job["id"])
    if on_progress is not None and job["progress"].get("frames_total"):
        progress = job["progress"]
        on_progress(progress["frames_done"], progress["frames_total"], job["state"])
    return job


def batch(args: argparse.Namespace, client: Client) -> int:
    """`restyle batch PREFIX`: start a batch over a prefix of your space; with --wait, follow it to its end."""
    spec = {"style": args.style} if args.style else {}
    if args.model:
        spec = {"model": args.model}
    if args.upload:
        print(f"uploaded {len(client.upload_folder(args.prefix, Path(args.upload)))} files to {args.prefix or '.'}")
    made = client.submit_batch(args.prefix, spec, args.max_failures)
    print(describe_batch(made))
    if not args.wait:
        return 0
    while made["state"] in ("listing", "running"):
        time.sleep(1)
        made = client.batch(made["id"])
    print(describe_batch(made))
    for item in client.batch_items(made["id"], "failed"):
        print(f"  failed  {item['input']}: {item['reason']}")
    print(f"manifest: {made['manifest']}")
    return BATCH_EXIT.get(made["state"], EXIT_ERROR)


def batches(args: argparse.Namespace, client: Client) -> int:
    """`restyle batches`: yours, newest first; with an id, that one and the items that failed (--cancel)."""
    if not args.id:
        for found in client.batches():
            print(describe_batch(found))
        return 0
    if args.cancel:
        client.cancel_batch(args.id)
    shown = client.batch(args.id)
    print(describe_batch(shown))
    for item in client.batch_items(args.id, "failed"):
        print(f"  failed  {item['input']}: {item['reason']}")
    return 0


def describe_batch(batch: dict) -> str:
    p = batch["progress"]
    eta = f", about {round(p['eta_s'])} s left" if p.get("eta_s") is not None else ""
    line = (
        f"batch {batch['id']}  {batch['state']:<9} {p['done']}/{p['total']} items: {p['succeeded']} scored, "
        f"{p['reused']} reused, {p['failed']} failed, {p['not_run']} not run{eta}  {batch['prefix']}  {batch['model']}"
    )
    return line + (f"  ({batch['reason']})" if batch.get("reason") else "")


def models_add(args: argparse.Namespace, client: Client) -> int:
    print(_model_row(client.add_model(args.name, Path(args.file), args.kind)))
    return 0


def models_list(args: argparse.Namespace, client: Client) -> int:
    models = client.models()
    for model in models:
        print(_model_row(model))
    if not models:
        print("no models registered (restyle models add NAME model.onnx)")
    return 0


def models_remove(args: argparse.Namespace, client: Client) -> int:
    print(f"removed {client.remove_model(args.name)['name']}")
    return 0


def pictures_add(args: argparse.Namespace, client: Client) -> int:
    print(_picture_row(client.save_picture(args.name, Path(args.file))))
    return 0


def pictures_list(args: argparse.Namespace, client: Client) -> int:
    for picture in client.pictures():
        print(_picture_row(picture))
    return 0


def pictures_remove(args: argparse.Namespace, client: Client) -> int:
    print(f"removed {client.delete_picture(args.name)['name']}")
    return 0


def webhook_secret(args: argparse.Namespace, client: Client) -> int:
    print(client.webhook_secret(args.owner)["secret"])
    return 0


def describe_job(job: dict, now: float | None = None) -> str:
    """One line: id, state, frames, input, model, when it was submitted (local time, how long ago), how long it took."""
    progress = job["progress"]
    line = (
        f"{job['id']}  {job['state']:<10} {progress['frames_done']}/{progress['frames_total']} frames  "
        f"{job['input']}  {job.get('model', '')}  submitted {local(job.get('created_at'), now)}"
    )
    began, ended = moment(job.get("started_at") or job.get("created_at")), moment(job.get("finished_at"))
    if began and ended:
        line += f", took {duration((ended - began).total_seconds())}"
    records = job.get("records")
    if records:
        counts = ", ".join(f"{name} {n}" for name, n in (records.get("detections") or {}).items()) or "none"
        line += f"  [{records.get('frames_with_detections')} frames with detections: {counts}]"
    return line + (f"  ({job['reason']})" if job.get("reason") else "")


def _model_row(model: dict) -> str:
    return (
        f"{model['name']:<24} {model['kind']:<12} {model['output']:<14} {model['size']:>12} bytes  "
        f"sha256 {model['sha256'][:12]}"
    )


def _picture_row(picture: dict) -> str:
    size = f"{picture['width']}x{picture['height']}"
    return f"{picture['name']:<24} {size:<12} {picture['size']:>12} bytes  sha256 {picture['sha256'][:12]}"
