"""The command line's grammar: every command, its options and their help (argparse, declared)."""

from __future__ import annotations

import argparse

from restyle.cli import commands
from restyle.media.deflicker import DEFAULT_STRENGTH
from restyle.stores.states import ACTIVE, FINAL


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr and exit 2, like every other error (argparse's message names the allowed
    values of a choice); the usage is one `--help` away. Subcommands' parsers are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"restyle: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="restyle", description="Restyle every frame of a video (or a folder of images) with a neural network."
    )
    parser.set_defaults(command=lambda args: parser.print_help() or 0)
    sub = parser.add_subparsers(metavar="COMMAND")

    _run_parser(sub)
    _quality_parser(sub)
    styles = sub.add_parser("styles", help="list the 26 built-in styles, or render them all on a picture")
    styles.add_argument("--sheet", metavar="PNG", help="write a contact sheet of all 26 styles")
    styles.add_argument(
        "--image", metavar="PICTURE", help="the picture for the sheet (default: a frame of FFmpeg's test pattern)"
    )
    styles.set_defaults(command=commands.styles)

    _service_parsers(sub)
    _sample_parser(sub)
    return parser


def _run_parser(sub) -> None:
    run = sub.add_parser("run", help="score a video, or a batch (a folder or a list of videos and images), here")
    run.add_argument(
        "input",
        help="a video file; a folder (a batch: every video and image in it, recursively); "
        "with --list, a file naming one path a line",
    )
    run.add_argument(
        "-o",
        "--output",
        required=True,
        help="output video (.mp4 .mov .mkv .webm .ts .m2ts: the container), "
        ".jsonl for records models, or for a batch a folder (the inputs' tree, and manifest.jsonl)",
    )
    run.add_argument("--list", action="store_true", help="INPUT is a file naming the batch's inputs, one a line")
    run.add_argument(
        "--max-failures",
        metavar="N|P%",
        help="a batch stops once more than N items (or P%% of them) failed (default: every item is tried)",
    )
    _model_options(run)
    run.add_argument(
        "--deflicker",
        type=float,
        nargs="?",
        const=DEFAULT_STRENGTH,
        metavar="STRENGTH",
        help=f"smooth flicker between frames along the input's motion, 0..1 (alone: {DEFAULT_STRENGTH})",
    )
    run.add_argument("--work-dir", help="keep finished chunks here; running again resumes where it stopped")
    run.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    run.add_argument("--threads", type=int, help="model threads per worker (default: cores / workers)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the model runs (default auto)")
    run.add_argument(
        "--backend",
        choices=["auto", "onnxruntime", "openvino"],
        help="model runtime (default auto: the one --precision picks)",
    )
    run.add_argument(
        "--precision",
        choices=["auto", "f32", "bf16", "int8"],
        help="auto (default): bf16 where the CPU has it, else int8, where the model passes the fidelity bar; "
        "else f32; f32: exact",
    )
    run.add_argument("--batch-size", type=int, help="frames per model call (default 1 on CPU, 8 on GPU)")
    run.add_argument("--crf", type=int, help="x264 quality, lower is better (default 18)")
    run.add_argument("--preset", help="x264 preset (default superfast, with x264's macroblock tree)")
    run.add_argument("--chunk-seconds", type=float, help="target chunk length (default 4)")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(command=commands.run)


def _quality_parser(sub) -> None:
    quality = sub.add_parser(
        "quality", help="measure an output's flicker (warping error) and its distance to the per-frame style"
    )
    quality.add_argument("input", help="the video that was restyled")
    quality.add_argument("output", help="the restyled video")
    quality.add_argument(
        "--reference", metavar="VIDEO", help="compare against this video (PSNR/SSIM), e.g. a per-frame run"
    )
    _model_options(quality, default_style=None)
    quality.add_argument(
        "--chunk-starts",
        metavar="N,N,...",
        help="first frames of the chunks (default: the plan `restyle run` makes here)",
    )
    quality.add_argument(
        "--chunk-seconds", type=float, help="the --chunk-seconds the output was made with, to plan its chunks"
    )
    quality.add_argument(
        "--json", action="store_true", help="print the figures as JSON (with --per-frame, every pair's error)"
    )
    quality.add_argument("--per-frame", action="store_true", help="with --json: the warping error of every frame pair")
    quality.set_defaults(command=commands.quality)


def _service_parsers(sub) -> None:
    """The commands that start or talk to a service (serve, worker, submit, models, pictures, webhook-secret, jobs,
    batch, batches, job)."""
    serve = sub.add_parser("serve", help="API + dashboard + inbox trigger + workers on this machine")
    serve.add_argument("--host", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, help="default 8000")
    serve.add_argument("--workers", type=int, dest="local_workers", help="worker processes to start (default 1)")
    serve.set_defaults(command=commands.serve)

    worker = sub.add_parser("worker", help="take jobs from the job store and run them (any number, any machine)")
    worker.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # restyle serve's pid: exit when it does
    worker.set_defaults(command=commands.worker)

    _submit_parser(sub)

    _catalogue_parser(
        sub,
        "models",
        "the service's registered models: list, add (admins), remove (admins)",
        [
            (
                "add",
                "register an ONNX model under a name (checked, stored by content hash)",
                ["name", ("file", "the .onnx file")],
                "models_add",
            ),
            ("list", "the registered models", [], "models_list"),
            ("remove", "remove a registered model", ["name"], "models_remove"),
        ],
    ).choices["add"].add_argument(
        "--kind",
        default="auto",
        help="onnx, yolo, tensors, or a plugin handler "
        "(default: yolo for Ultralytics detectors, tensors for files that name their classes, else onnx)",
    )
    _catalogue_parser(
        sub,
        "pictures",
        "your saved style pictures on the service: list, add, remove",
        [
            ("add", "save a picture under a name, for --style-image NAME", ["name", "file"], "pictures_add"),
            ("list", "your saved pictures", [], "pictures_list"),
            ("remove", "delete a saved picture", ["name"], "pictures_remove"),
        ],
    )

    jobs = sub.add_parser("jobs", help="list jobs on a running service, newest first")
    jobs.add_argument("--state", choices=[str(state) for state in ACTIVE + FINAL], help="only jobs in this state")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON (times in ISO 8601)")
    _service_options(jobs)
    jobs.set_defaults(command=commands.jobs)

    _batch_parsers(sub)

    job = sub.add_parser(
        "job",
        help="one job (JSON, ISO 8601 times): state, progress, figures; --log (admins), --download; "
        "--cancel, --retry, --delete",
    )
    job.add_argument("id")
    job.add_argument("--log", action="store_true", help="print the job's log (admins only)")
    job.add_argument("--download", metavar="FILE", help="save the output here")
    act = job.add_mutually_exclusive_group()
    act.add_argument("--cancel", action="store_true", help="stop it at its next frame batch; its chunks are kept")
    act.add_argument(
        "--retry", action="store_true", help="queue a failed, dead or cancelled job again, reusing its chunks"
    )
    act.add_argument(
        "--delete", action="store_true", help="delete an ended job with its output, stills, log and chunks"
    )
    _service_options(job)
    job.set_defaults(command=commands.job)


def _batch_parsers(sub) -> None:
    """``restyle batch`` and ``restyle batches``: batches on a running service."""
    batch = sub.add_parser(
        "batch", help="score every object under a prefix of your space in the service's data store (datasets/YOU/)"
    )
    batch.add_argument("prefix", help="a folder of your space, e.g. photos/2024 ('' for all of it)")
    picked = batch.add_mutually_exclusive_group()
    picked.add_argument("--style", help="one of the 26 styles (0-25) or a blend like 3:0.5,12:0.5")
    picked.add_argument("--model", metavar="NAME", help="a model registered on the service (restyle models list)")
    batch.add_argument(
        "--max-failures", metavar="N|P%", help="the batch stops once more than N items (or P%% of them) failed"
    )
    batch.add_argument(
        "--wait", action="store_true", help="follow it to its end; exit 0 all scored, 3 some failed, 4 stopped"
    )
    batch.add_argument("--upload", metavar="FOLDER", help="first upload this folder's files (its tree) to the prefix")
    _service_options(batch)
    batch.set_defaults(command=commands.service_command("batch"))

    batches = sub.add_parser("batches", help="your batches on a running service; with an id, its failed items")
    batches.add_argument("id", nargs="?")
    batches.add_argument("--cancel", action="store_true", help="cancel that batch")
    _service_options(batches)
    batches.set_defaults(command=commands.service_command("batches"))


def _submit_parser(sub) -> None:
    """``restyle submit`` and ``restyle webhook-secret`` (the secret that signs the webhook a job may name)."""
    submit = sub.add_parser("submit", help="upload a video to a running service, with any model it offers")
    submit.add_argument("video")
    _spec_options(submit, "a picture file (uploaded with the job) or the name of one you saved")
    _service_options(submit)
    submit.set_defaults(command=commands.submit)

    rerun = sub.add_parser(
        "rerun", help="a new job of a job's stored video with another style or model: nothing is uploaded again"
    )
    rerun.add_argument("id", help="the job whose video is run again (its input must still be kept)")
    _spec_options(rerun, "the name of a picture you saved (restyle pictures list)")
    _service_options(rerun)
    rerun.set_defaults(command=commands.rerun)

    secret = sub.add_parser(
        "webhook-secret", help="print the secret that signs your webhook deliveries (whsec_...), to verify them"
    )
    secret.add_argument("--owner", help="admins: another owner's (@inbox for dropped files' jobs)")
    _service_options(secret)
    secret.set_defaults(command=commands.service_command("webhook_secret"))


def _spec_options(parser: argparse.ArgumentParser, picture_help: str) -> None:
    """A job's spec (the model and its settings), and following the job to its end: submit's and rerun's."""
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--style", help="one of the 26 styles (0-25) or a blend like 3:0.5,12:0.5 (the default model)")
    chosen.add_argument("--style-image", metavar="PICTURE", help=picture_help)
    chosen.add_argument("--model", metavar="NAME", help="a model registered on the service (restyle models list)")
    parser.add_argument("--strength", type=float, help="0..1; less mixes the original back in (default 1)")
    parser.add_argument(
        "--deflicker",
        type=float,
        nargs="?",
        const=DEFAULT_STRENGTH,
        metavar="STRENGTH",
        help=f"smooth flicker between frames, 0..1 (alone: {DEFAULT_STRENGTH})",
    )
    parser.add_argument(
        "--params", metavar="JSON", help='the model\'s other parameters as JSON, e.g. {"confidence": 0.4}'
    )
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help="an http(s) URL the service POSTs the job's summary to when it ends, signed (restyle webhook-secret)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the job to its end (a progress bar with its ETA on stderr); with -o, download the output",
    )
    parser.add_argument("-o", "--output", help="with --wait: where to save the output")
    parser.add_argument("-q", "--quiet", action="store_true", help="with --wait: no progress bar")


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
        one.set_defaults(command=commands.service_command(command))
        _service_options(one)
    return actions_sub


def _sample_parser(sub) -> None:
    sample = sub.add_parser(
        "sample", help="make a sample clip (a camera moving over a real photo, with a tone) to try restyle on"
    )
    sample.add_argument("output", nargs="?", default="sample.mp4")
    sample.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    sample.add_argument("--rate", default="25", help="frame rate, e.g. 25 or 30000/1001 (default 25)")
    sample.add_argument("--seconds", type=float, default=4.0)
    sample.add_argument("--no-audio", action="store_true")
    sample.add_argument(
        "--photo",
        metavar="PICTURE",
        help="the picture the camera moves over (default: a photo an installed package ships, if any)",
    )
    sample.add_argument("--pattern", action="store_true", help="FFmpeg's test pattern instead of a photo")
    sample.add_argument(
        "--motion", choices=["pan", "zoom"], default="pan", help="with --photo: how the camera moves (default pan)"
    )
    sample.set_defaults(command=commands.sample)


def _model_options(parser: argparse.ArgumentParser, default_style: str | None = "0") -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--style",
        default=None,
        help="one of the 26 styles (0-25) or a blend like 3:0.5,12:0.5"
        + (f" (default {default_style})" if default_style else ""),
    )
    which.add_argument("--style-image", metavar="PICTURE", help="any picture to use as the style")
    which.add_argument(
        "--model",
        metavar="KIND:FILE",
        help="onnx:FILE (any image->image ONNX model, any output size), "
        "yolo:FILE (an Ultralytics detector: -o FILE.jsonl), tensors:FILE (a classifier or an embedding model: "
        "-o FILE.jsonl), or a plugin handler's NAME[:FILE]",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a per-call parameter of the model, e.g. confidence=0.5 (repeatable)",
    )
    parser.add_argument(
        "--value-range", type=float, default=None, help="for onnx models: pixel values run 0..1 (default) or 0..255"
    )
    parser.add_argument("--strength", type=float, default=1.0, help="0..1; less mixes the original back in (default 1)")


def _service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        help="the service's URL (default: RESTYLE_SERVER, else the one `restyle serve` on this RESTYLE_HOME wrote, "
        "else http://127.0.0.1:8000)",
    )
    parser.add_argument("--token", help="bearer token (default RESTYLE_TOKEN or this machine's admin token)")
