"""What the local commands do: ``run``, ``quality``, ``styles``, ``sample``, and the doors to the service's."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from restyle.cli.progress import ProgressBar
from restyle.config import load_settings
from restyle.errors import InputError, ModelError
from restyle.jobspec import JobSpec


def job_spec(args: argparse.Namespace, deflicker: float | None = None) -> JobSpec:
    """The JobSpec the command's options name (the CLI's door to the one record every door builds)."""
    params = dict(_param(text) for text in args.param)
    if args.value_range is not None:
        params["value_range"] = args.value_range
    from restyle.handlers import check
    from restyle.handlers.styles import StyleImageHandler, StylesHandler

    fields: dict = {"strength": args.strength, "deflicker": deflicker or 0.0, "params": params}
    # An option given empty is a value the JobSpec refuses, never a silent default (Path("") would be the cwd).
    if args.style_image is not None:
        fields |= {"model": StyleImageHandler.name, "style_image": _resolved(args.style_image)}
    elif args.model is not None:
        kind, colon, path = args.model.partition(":")
        fields |= {"model": kind} | ({"model_file": _resolved(path)} if colon else {})
    else:
        fields |= {
            "model": StylesHandler.name,
            "style": "0" if args.style is None else args.style,
        }  # --style "" is refused, not 0
    spec = JobSpec(**fields)
    check(spec)
    return spec


def _resolved(path: str) -> str:
    return str(Path(path).resolve()) if path.strip() else path


def _param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ModelError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        workers=args.workers,
        threads=args.threads,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        batch_size=args.batch_size,
        crf=args.crf,
        preset=args.preset,
        chunk_seconds=args.chunk_seconds,
    )
    spec = job_spec(args, args.deflicker)
    if args.list or Path(args.input).is_dir():
        from restyle.cli.batch import run_batch_command

        return run_batch_command(args, spec, settings)
    if args.max_failures is not None:
        raise InputError("--max-failures is for a batch (a folder, or --list); one video either succeeds or fails")
    from restyle.pipeline import run

    bar = ProgressBar(args, Path(args.input).name, "frame")
    try:
        report = run(args.input, args.output, spec, settings=settings, work=args.work_dir, on_progress=bar.show)
    finally:
        bar.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def quality(args: argparse.Namespace) -> int:
    from restyle.pipeline import plan
    from restyle.pipeline.reference import model_frames
    from restyle.quality import measure

    if args.reference and (args.style or args.style_image or args.model):
        raise InputError(
            "give either --reference or a model (--style, --style-image, --model) to compare against, not both"
        )
    reference = args.reference
    if not reference and (args.style or args.style_image or args.model):
        reference = model_frames(args.input, job_spec(args))  # the per-frame stylisation, made here
    if args.chunk_starts:
        try:
            starts = [int(n) for n in args.chunk_starts.split(",") if n.strip()]
        except ValueError:
            raise InputError(f"--chunk-starts takes frame numbers like 0,100,200, got {args.chunk_starts!r}") from None
    else:
        starts = [c.first_frame for c in plan(args.input, settings=load_settings(chunk_seconds=args.chunk_seconds))]
    report = measure(args.input, args.output, reference=reference, chunk_starts=starts)
    print(json.dumps(report.to_dict(per_frame=args.per_frame), indent=2) if args.json else report.summary())
    return 0


def styles(args: argparse.Namespace) -> int:
    from restyle.jobspec import NUM_STYLES

    if not args.sheet:
        print(f"{NUM_STYLES} built-in styles, 0 to {NUM_STYLES - 1} (the network came without names).")
        print("Blend them with weights: --style 3:0.5,12:0.5. See them all: restyle styles --sheet styles.png")
        return 0
    from restyle.handlers.sheet import contact_sheet

    picture = args.image
    if picture and not Path(picture).is_file():
        raise InputError(f"picture not found: {picture}")
    contact_sheet(picture).save(args.sheet)
    print(f"wrote {args.sheet}")
    return 0


def service_command(name: str):
    """A command that talks to a running service (restyle/client/commands.py), imported when it runs."""

    def command(args: argparse.Namespace) -> int:
        from restyle.client import commands

        return getattr(commands, name)(args, _client(args))

    return command


def _client(args: argparse.Namespace):
    from restyle.client.client import Client

    return Client.from_settings(load_settings(), args.server, args.token)


def serve(args: argparse.Namespace) -> int:
    from restyle.service.serve import serve

    serve(load_settings(host=args.host, port=args.port, local_workers=args.local_workers))
    return 0


def worker(args: argparse.Namespace) -> int:
    from restyle.service.serve import work

    work(load_settings(), parent=args.parent)
    return 0


def submit(args: argparse.Namespace) -> int:
    """`restyle submit`: the client's, with the CLI's progress bar while it waits."""
    from restyle.client import commands

    return _with_bar(args, Path(args.video).name, commands.submit)


def jobs(args: argparse.Namespace) -> int:
    from restyle.client.commands import describe_job
    from restyle.client.times import with_iso_times

    found = _client(args).jobs(args.state)
    if args.json:
        print(json.dumps([with_iso_times(job) for job in found], indent=2))
        return 0
    for job in found:
        print(describe_job(job))
    return 0


def rerun(args: argparse.Namespace) -> int:
    """`restyle rerun`: the client's, with the CLI's progress bar while it waits."""
    from restyle.client import commands

    return _with_bar(args, f"rerun of {args.id}", commands.rerun)


def _with_bar(args: argparse.Namespace, label: str, command) -> int:
    """A client command that may follow its job (--wait), with the CLI's progress bar, closed whatever happens."""
    bar = ProgressBar(args, label, "frame", eta_given=True)
    try:
        return command(args, _client(args), on_progress=bar.show)
    finally:
        bar.close()


def job(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.delete:
        client.delete(args.id)
        print(f"deleted {args.id}")
        return 0
    if args.cancel:
        client.cancel(args.id)
    if args.retry:
        client.retry(args.id)
    if args.log:
        print(client.log(args.id), end="")
        return 0
    from restyle.client.times import with_iso_times

    job = client.job(args.id)
    print(json.dumps(with_iso_times(job), indent=2))
    if args.download:
        client.download(args.id, Path(args.download))
        print(f"wrote {args.download}")
    elif job["state"] == "succeeded":
        print(f"download: {client.output_link(args.id)['url']}")
    return 0


def sample(args: argparse.Namespace) -> int:
    from restyle.media.sample import installed_photo, make_clip, make_motion_clip

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size takes WIDTHxHEIGHT, got {args.size!r}") from None
    options = dict(width=width, height=height, rate=args.rate, seconds=args.seconds, audio=not args.no_audio)
    photo = args.photo or (None if args.pattern else installed_photo())
    if photo:
        path = make_motion_clip(args.output, photo, motion=args.motion, **options)
    else:
        path = make_clip(args.output, **options)
        if not args.pattern:
            print(
                "restyle: no installed package ships a photo (matplotlib does: pip install matplotlib), "
                "so the sample is FFmpeg's test pattern; --photo PICTURE uses your own",
                file=sys.stderr,
            )
    print(f"wrote {path}" + (f" (a camera moving over {Path(photo).name})" if photo else " (test pattern)"))
    return 0
