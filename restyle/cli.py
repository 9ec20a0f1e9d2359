"""The command line: ``restyle run``, ``quality``, ``styles``, ``sample``, and the service's commands.

Every RestyleError becomes one line on stderr and exit code 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from restyle.config import load_settings
from restyle.errors import InputError, ModelError, RestyleError
from restyle.jobspec import JobSpec, validation_reason
from restyle.media.deflicker import DEFAULT_STRENGTH

EXIT_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="restyle: %(message)s", stream=sys.stderr)
    try:
        return args.command(args)
    except RestyleError as exc:
        print(f"restyle: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValidationError as exc:
        print(f"restyle: error: bad value: {validation_reason(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("restyle: interrupted; finished chunks are kept in --work-dir, if one was given", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="restyle", description="Restyle every frame of a video (or a folder of images) with a neural network.")
    parser.set_defaults(command=lambda args: parser.print_help() or 0)
    sub = parser.add_subparsers(metavar="COMMAND")

    _run_parser(sub)
    _quality_parser(sub)
    styles = sub.add_parser("styles", help="list the 26 built-in styles, or render them all on a picture")
    styles.add_argument("--sheet", metavar="PNG", help="write a contact sheet of all 26 styles")
    styles.add_argument("--image", metavar="PICTURE", help="the picture for the sheet (default: a frame of FFmpeg's test pattern)")
    styles.set_defaults(command=_styles)

    _service_parsers(sub)
    _sample_parser(sub)
    return parser


def _run_parser(sub) -> None:
    run = sub.add_parser("run", help="restyle a video or a folder of images, here and now")
    run.add_argument("input", help="a video file, or a folder of images")
    run.add_argument("-o", "--output", required=True, help="output video (.mp4 .mov .mkv .webm .ts .m2ts: the container), "
                     ".jsonl for records models, or a folder for images")
    _model_options(run)
    run.add_argument("--deflicker", type=float, nargs="?", const=DEFAULT_STRENGTH, metavar="STRENGTH",
                     help=f"smooth flicker between frames along the input's motion, 0..1 (alone: {DEFAULT_STRENGTH})")
    run.add_argument("--work-dir", help="keep finished chunks here; running again resumes where it stopped")
    run.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    run.add_argument("--threads", type=int, help="model threads per worker (default: cores / workers)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the model runs (default auto)")
    run.add_argument("--backend", choices=["auto", "onnxruntime", "openvino"], help="model runtime (default auto: the one --precision picks)")
    run.add_argument("--precision", choices=["auto", "f32", "bf16", "int8"],
                     help="auto (default): bf16 where the CPU has it, else int8, where the model passes the fidelity bar; "
                          "else f32; f32: exact")
    run.add_argument("--batch-size", type=int, help="frames per model call (default 1 on CPU, 8 on GPU)")
    run.add_argument("--crf", type=int, help="x264 quality, lower is better (default 18)")
    run.add_argument("--preset", help="x264 preset (default superfast, with x264's macroblock tree)")
    run.add_argument("--chunk-seconds", type=float, help="target chunk length (default 4)")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(command=_run)


def _quality_parser(sub) -> None:
    quality = sub.add_parser("quality", help="measure an output's flicker (warping error) and its distance to the per-frame style")
    quality.add_argument("input", help="the video that was restyled")
    quality.add_argument("output", help="the restyled video")
    quality.add_argument("--reference", metavar="VIDEO", help="compare against this video (PSNR/SSIM), e.g. a per-frame run")
    _model_options(quality, default_style=None)
    quality.add_argument("--chunk-starts", metavar="N,N,...", help="first frames of the chunks (default: the plan `restyle run` makes here)")
    quality.add_argument("--chunk-seconds", type=float, help="the --chunk-seconds the output was made with, to plan its chunks")
    quality.add_argument("--json", action="store_true", help="print the figures as JSON (with --per-frame, every pair's error)")
    quality.add_argument("--per-frame", action="store_true", help="with --json: the warping error of every frame pair")
    quality.set_defaults(command=_quality)


def _service_parsers(sub) -> None:
    """The commands that start or talk to a service (serve, worker, submit, models, pictures, jobs, job)."""
    serve = sub.add_parser("serve", help="API + dashboard + inbox trigger + workers on this machine")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8000")
    serve.add_argument("--workers", type=int, dest="local_workers", help="worker processes to start (default 1)")
    serve.set_defaults(command=_serve)

    worker = sub.add_parser("worker", help="take jobs from the job store and run them (any number, any machine)")
    worker.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # restyle serve's pid: exit when it does
    worker.set_defaults(command=_worker)

    submit = sub.add_parser("submit", help="upload a video to a running service, with any model it offers")
    submit.add_argument("video")
    chosen = submit.add_mutually_exclusive_group()
    chosen.add_argument("--style", help="one of the 26 styles (0-25) or a blend like 3:0.5,12:0.5 (the default model)")
    chosen.add_argument("--style-image", metavar="PICTURE", help="a picture file (uploaded with the job) or the name of one you saved")
    chosen.add_argument("--model", metavar="NAME", help="a model registered on the service (restyle models list)")
    submit.add_argument("--strength", type=float, help="0..1; less mixes the original back in (default 1)")
    submit.add_argument("--deflicker", type=float, nargs="?", const=DEFAULT_STRENGTH, metavar="STRENGTH",
                        help=f"smooth flicker between frames, 0..1 (alone: {DEFAULT_STRENGTH})")
    submit.add_argument("--params", metavar="JSON", help='the model\'s other parameters as JSON, e.g. {"confidence": 0.4}')
    submit.add_argument("--wait", action="store_true", help="wait for the job to end; with -o, download the output")
    submit.add_argument("-o", "--output", help="with --wait: where to save the output")
    _service_options(submit)
    submit.set_defaults(command=_service_command("submit"))

    _catalogue_parser(sub, "models", "the service's registered models: list, add (admins), remove (admins)", [
        ("add", "register an ONNX model under a name (checked, stored by content hash)", ["name", ("file", "the .onnx file")],
         "models_add"),
        ("list", "the registered models", [], "models_list"),
        ("remove", "remove a registered model", ["name"], "models_remove"),
    ]).choices["add"].add_argument(
        "--kind", default="auto", help="onnx, yolo, or a plugin handler (default: yolo for Ultralytics exports, else onnx)")
    _catalogue_parser(sub, "pictures", "your saved style pictures on the service: list, add, remove", [
        ("add", "save a picture under a name, for --style-image NAME", ["name", "file"], "pictures_add"),
        ("list", "your saved pictures", [], "pictures_list"),
        ("remove", "delete a saved picture", ["name"], "pictures_remove"),
    ])

    jobs = sub.add_parser("jobs", help="list jobs on a running service")
    jobs.add_argument("--state", help="only jobs in this state")
    _service_options(jobs)
    jobs.set_defaults(command=_jobs)

    job = sub.add_parser("job", help="one job: state, progress, figures; --log (admins), --download, --cancel")
    job.add_argument("id")
    job.add_argument("--log", action="store_true", help="print the job's log (admins only)")
    job.add_argument("--download", metavar="FILE", help="save the output here")
    job.add_argument("--cancel", action="store_true")
    _service_options(job)
    job.set_defaults(command=_job)


def _catalogue_parser(sub, name: str, help: str, actions: list) -> argparse._SubParsersAction:
    """``restyle models|pictures ACTION``: each action's positional arguments, wired to its client command."""
    parser = sub.add_parser(name, help=help)
    actions_sub = parser.add_subparsers(metavar="ACTION")
    parser.set_defaults(command=lambda args: parser.print_help() or 0)
    for action, action_help, positionals, command in actions:
        one = actions_sub.add_parser(action, help=action_help)
        for positional in positionals:
            arg, arg_help = positional if isinstance(positional, tuple) else (positional, None)
            one.add_argument(arg, help=arg_help)
        one.set_defaults(command=_service_command(command))
        _service_options(one)
    return actions_sub


def _sample_parser(sub) -> None:
    sample = sub.add_parser("sample", help="make a sample clip (a camera moving over a real photo, with a tone) to try restyle on")
    sample.add_argument("output", nargs="?", default="sample.mp4")
    sample.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    sample.add_argument("--rate", default="25", help="frame rate, e.g. 25 or 30000/1001 (default 25)")
    sample.add_argument("--seconds", type=float, default=4.0)
    sample.add_argument("--no-audio", action="store_true")
    sample.add_argument("--photo", metavar="PICTURE",
                        help="the picture the camera moves over (default: a photo an installed package ships, if any)")
    sample.add_argument("--pattern", action="store_true", help="FFmpeg's test pattern instead of a photo")
    sample.add_argument("--motion", choices=["pan", "zoom"], default="pan", help="with --photo: how the camera moves (default pan)")
    sample.set_defaults(command=_sample)


def _model_options(parser: argparse.ArgumentParser, default_style: str | None = "0") -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--style", default=None, help="one of the 26 styles (0-25) or a blend like 3:0.5,12:0.5"
                       + (f" (default {default_style})" if default_style else ""))
    which.add_argument("--style-image", metavar="PICTURE", help="any picture to use as the style")
    which.add_argument("--model", metavar="KIND:FILE", help="onnx:FILE (any image->image ONNX model, any output size), "
                       "yolo:FILE (an Ultralytics detector: -o FILE.jsonl), or a plugin handler's NAME[:FILE]")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a per-call parameter of the model, e.g. confidence=0.5 (repeatable)")
    parser.add_argument("--value-range", type=float, default=None, help="for onnx models: pixel values run 0..1 (default) or 0..255")
    parser.add_argument("--strength", type=float, default=1.0, help="0..1; less mixes the original back in (default 1)")


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
        fields |= {"model": StylesHandler.name, "style": "0" if args.style is None else args.style}  # --style "" is refused, not 0
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


def _run(args: argparse.Namespace) -> int:
    from restyle.pipeline import run

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
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if args.quiet or args.json:
            return
        if bar is None:
            from tqdm import tqdm

            # Frames already done (reused chunks) are the start, not speed: the ETA is frames left / recent speed.
            bar = tqdm(total=total, initial=done, unit="frame", desc=Path(args.input).name, file=sys.stderr,
                       dynamic_ncols=True, smoothing=0.1,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} frames [{elapsed}, ETA {remaining}, {rate_fmt}]")
        bar.update(done - bar.n)

    try:
        report = run(args.input, args.output, spec, settings=settings, work=args.work_dir, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _quality(args: argparse.Namespace) -> int:
    from restyle.pipeline import plan
    from restyle.pipeline.reference import model_frames
    from restyle.quality import measure

    if args.reference and (args.style or args.style_image or args.model):
        raise InputError("give either --reference or a model (--style, --style-image, --model) to compare against, not both")
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


def _styles(args: argparse.Namespace) -> int:
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


def _service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="the service's URL (default RESTYLE_SERVER or this machine's)")
    parser.add_argument("--token", help="bearer token (default RESTYLE_TOKEN or this machine's admin token)")


def _service_command(name: str):
    """A command that talks to a running service (restyle/client/commands.py), imported when it runs."""

    def command(args: argparse.Namespace) -> int:
        from restyle.client import commands

        return getattr(commands, name)(args, _client(args))

    return command


def _client(args: argparse.Namespace):
    from restyle.client.client import Client

    return Client.from_settings(load_settings(), args.server, args.token)


def _serve(args: argparse.Namespace) -> int:
    from restyle.service.serve import serve

    serve(load_settings(host=args.host, port=args.port, local_workers=args.local_workers))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from restyle.service.serve import work

    work(load_settings(), parent=args.parent)
    return 0


def _jobs(args: argparse.Namespace) -> int:
    for job in _client(args).jobs(args.state):
        print(_describe_job(job))
    return 0


def _job(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.cancel:
        client.cancel(args.id)
    if args.log:
        print(client.log(args.id), end="")
        return 0
    job = client.job(args.id)
    print(json.dumps(job, indent=2))
    if args.download:
        client.download(args.id, Path(args.download))
        print(f"wrote {args.download}")
    elif job["state"] == "succeeded":
        print(f"download: {client.output_link(args.id)['url']}")
    return 0


def _describe_job(job: dict) -> str:
    from restyle.client.commands import describe_job

    return describe_job(job)


def _sample(args: argparse.Namespace) -> int:
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
            print("restyle: no installed package ships a photo (matplotlib does: pip install matplotlib), "
                  "so the sample is FFmpeg's test pattern; --photo PICTURE uses your own", file=sys.stderr)
    print(f"wrote {path}" + (f" (a camera moving over {Path(photo).name})" if photo else " (test pattern)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
