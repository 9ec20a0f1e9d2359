"""JobSpecs in the service: what a door received becomes the job's stored spec; the worker makes it local.

Every door (API JSON and multipart, the dashboard, inbox sidecars) goes through
:func:`door_params`: a ``webhook`` URL beside the spec's fields is checked (:mod:`.webhooks`),
the spec is validated, a registered model's name is pinned to its file (``model_file`` = its
content-hash key in the system store), a style picture (a saved one's name, or a file uploaded
with the job) becomes its key under the owner, and the spec's handler checks it against what was
kept when its files were added (:mod:`.facts`: no door loads a model or decodes a saved picture).
The result is the job's :class:`~restyle.stores.params.JobParams`.
:func:`local_spec` gives the worker the same spec with local paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, get_args

from pydantic import ValidationError

from restyle.config import Settings
from restyle.errors import InputError, Invalid, Refusal, RestyleError
from restyle.handlers.base import file_kinds, get_handler
from restyle.jobspec import JobSpec, OutputOptions, Preset, check_text, load_json, validation_reason
from restyle.service import keys
from restyle.service.catalogue import Catalogue, handler_names, local_copy
from restyle.service.context import Context
from restyle.service.webhooks import check_url
from restyle.stores.catalogue import RegisteredModel
from restyle.stores.params import JobParams

DOOR_FIELDS = set(JobSpec.model_fields) - {"model_file"}
PICTURE = "style_image"  # the JobSpec field of a style picture: a saved picture's name at the door, its key stored
MAX_SIDECAR_BYTES = 64 * 1024
WEBHOOK = "webhook"  # beside the JobSpec's fields at every door: where the job's end is announced (not in the spec)


@dataclass(frozen=True)
class Picture:
    """A style picture that came with the job (a multipart file, or a file beside an inbox drop)."""

    stream: BinaryIO
    filename: str


def door_params(
    context: Context, catalogue: Catalogue, owner: str, fields: dict, picture: Picture | None = None, admin=False
) -> JobParams:
    """The job params for what a door received; Invalid, or NotFound for a picture that is not the owner's.
    ``admin``: the encoder's floors (:func:`check_output`) do not apply."""
    fields = {name: value for name, value in fields.items() if value is not None}
    webhook = fields.pop(WEBHOOK, None)
    if webhook is not None:  # checked first: a refused URL costs no stored picture
        webhook = check_url(webhook, context.settings)
    if "model_file" in fields:
        raise Invalid(
            "model_file is not taken by the service: an admin registers the model "
            "(restyle models add NAME FILE) and jobs name it (model=NAME)"
        )
    unknown = sorted(set(fields) - DOOR_FIELDS)
    if unknown:
        raise Invalid(
            f"unknown field(s) {', '.join(unknown)}; a job takes {', '.join(sorted(DOOR_FIELDS | {WEBHOOK}))}"
        )
    if (picture is not None or fields.get("style_image")) and "model" not in fields:
        fields["model"] = picture_kind()  # a picture alone says what is wanted
    try:
        spec = JobSpec(**fields)
    except ValidationError as exc:
        raise Invalid(validation_reason(exc)) from None
    update: dict[str, Any] = {}
    registered = None
    if spec.model in handler_names():
        kind = spec.model
        if get_handler(kind).registrable:
            raise Invalid(
                f"model {kind} runs a model file: an admin registers it (restyle models add NAME FILE "
                f"--kind {kind}) and jobs name it (model=NAME)"
            )
    else:
        registered = catalogue.model(spec.model)
        if registered is None:
            names = ", ".join(m.name for m in catalogue.models()) or "none yet"
            runnable = sorted(handler_names() - set(file_kinds()))
            raise Invalid(
                f"unknown model {spec.model!r}: the handlers are {', '.join(runnable)}; "
                f"the registered models are {names} (GET /api/models)"
            )
        kind, update["model_file"] = registered.kind, registered.key
    check_output(context.settings, spec.output, kind, admin)
    takes_picture = PICTURE in get_handler(kind).file_fields
    picture_name = None
    if picture is not None or spec.style_image:
        if not takes_picture:
            takers = " or ".join(name for name in sorted(handler_names()) if PICTURE in get_handler(name).file_fields)
            raise Invalid(f"a style picture is for model {takers}; the {kind} model takes none")
        if picture is not None:
            picture_name = picture_label(picture.filename)
            update[PICTURE], _, _ = catalogue.store_picture(owner, picture.stream)
        else:
            saved = catalogue.picture(owner, spec.style_image or "")
            update[PICTURE], picture_name = saved.key, saved.name
    elif takes_picture:
        raise Invalid(
            f"model {kind} needs a picture: upload one with the job (style_image file) "
            "or name one you saved (POST /api/pictures)"
        )
    stored = spec.model_copy(update=update)
    params = JobParams(spec=stored, handler=kind, label=label(stored, kind, picture_name), webhook=webhook)
    local = None
    try:
        local = door_spec(catalogue, params, registered)
        if local is not None:
            _check(local)
    except Exception as exc:  # noqa: BLE001 - a plugin's check may raise anything: still a refusal, never a 500
        reason = (
            str(exc).splitlines()[0]
            if isinstance(exc, RestyleError)
            else f"the {kind} model refused the job: {type(exc).__name__}: {exc}"
        )
        for path, public in ((local and local.model_file, spec.model), (local and local.style_image, picture_name)):
            if path:  # the service's own paths are nobody else's business
                reason = reason.replace(path, public or "the file")
        raise Invalid(reason[:500]) from None
    return params


def sidecar_params(
    context: Context, catalogue: Catalogue, owner: str, name: str, text: bytes, picture_beside
) -> JobParams:
    """The params a sidecar asks for. ``picture_beside(name)`` opens a picture file next to the video.
    Raises a Refusal with a reason that names the sidecar."""
    if len(text) > MAX_SIDECAR_BYTES:
        raise Invalid(f"sidecar {name} is over {MAX_SIDECAR_BYTES} bytes")
    fields = load_json(text, f"sidecar {name}")
    if not isinstance(fields, dict):
        raise Invalid(f"sidecar {name} must hold a JSON object (a JobSpec), not {type(fields).__name__}")
    try:
        picture = None
        if isinstance(fields.get("style_image"), str):
            beside = fields.pop("style_image")
            fields.setdefault("model", picture_kind())
            picture = Picture(picture_beside(beside), beside)
        return door_params(context, catalogue, owner, fields, picture)
    except Refusal as exc:
        raise type(exc)(f"sidecar {name}: {exc}") from None


def picture_label(filename: str) -> str:
    """What a job's label calls a picture that came with it: its file's name, held to the rule of every JobSpec
    text (no control characters: a NUL in a file name is refused, not shown)."""
    name = Path(filename.replace("\\", "/")).name[:80] or "picture"
    try:
        return check_text(name, "the style picture's file name")
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def check_output(settings: Settings, output: OutputOptions, kind: str, admin: bool = False) -> None:
    """The output a job asks for, refused at the door if the worker could not honour it: a container for what the
    model makes (records: .jsonl; frames: a video container that holds the encoder), and, for anyone but an admin,
    no crf under ``tenant_min_crf`` and no preset slower than ``tenant_slowest_preset`` (placebo costs ~76x the
    encoding CPU of the default, crf 0 ~5x the size)."""
    records = is_records_kind(kind)
    if records and output.container not in ("auto", "jsonl"):
        raise Invalid(f"model {kind} writes records (.jsonl): output.container must be jsonl or auto")
    if not records and output.container == "jsonl":
        raise Invalid(f"model {kind} makes video: output.container is one of mp4, mov, mkv, ts, webm, or auto")
    if output.container == "ts" and output.codec == "libvpx-vp9":
        raise Invalid("the ts container holds no VP9 video: use libx264 or libx265, or container webm, mkv or mp4")
    if admin:
        return
    if output.crf is not None and output.crf < settings.tenant_min_crf:
        raise Invalid(
            f"output.crf {output.crf} is under this service's floor of {settings.tenant_min_crf} "
            "(lower is larger; RESTYLE_TENANT_MIN_CRF)"
        )
    presets = get_args(Preset)
    if output.preset is not None and presets.index(output.preset) > presets.index(settings.tenant_slowest_preset):
        raise Invalid(
            f"output.preset {output.preset} is slower than this service allows: {settings.tenant_slowest_preset} "
            "or faster (RESTYLE_TENANT_SLOWEST_PRESET)"
        )


def refused_params(reason: str) -> JobParams:
    """Params of a job made only to fail with ``reason`` (an inbox drop whose sidecar is bad)."""
    spec = JobSpec()
    return JobParams(spec=spec, handler=spec.model, label="refused", refused=reason)


def door_spec(catalogue: Catalogue, params: JobParams, registered: RegisteredModel | None) -> JobSpec | None:
    """The spec a door's check gets: for a registered model, its weightless graph; for a style picture, a stand-in
    (both were read and checked when they were added: :mod:`.facts`). None when there is nothing to check against
    (a registered file that is not ONNX: its handler checked it when it was registered)."""
    spec, update = params.spec, {"model": params.kind}
    if spec.model_file:
        graph = catalogue.graph_file(registered) if registered is not None else None
        if graph is None:
            return None
        update["model_file"] = str(graph)
    if spec.style_image:
        update["style_image"] = str(catalogue.stand_in_picture())
    return spec.model_copy(update=update)


def local_spec(context: Context, params: JobParams | None, owner: str, problem: str | None = None) -> JobSpec:
    """The stored spec with the handler's name for ``model`` and local paths for its files (for the pipeline).
    ``params`` None: the job's stored params cannot be read, for ``problem``."""
    if params is None:
        # Not the input's fault: params written by another version of the service, say. Another worker
        # may read them; if none can, the job goes dead after its attempts (a poison message).
        raise RestyleError(f"the job's spec cannot be read: {problem or 'unknown shape'}")
    if params.refused:
        raise InputError(params.refused)
    spec = params.spec
    update: dict[str, Any] = {"model": params.kind}
    if spec.model_file:
        update["model_file"] = str(local_copy(context, spec.model_file))
    if spec.style_image:
        if not spec.style_image.startswith(keys.pictures_of(owner)):
            raise InputError("the job's style picture is not its owner's")
        update["style_image"] = str(local_copy(context, spec.style_image))
    return spec.model_copy(update=update)


def picture_kind() -> str:
    """The handler a style picture alone asks for: the first that declares a picture field and is not registrable."""
    from restyle.handlers.base import registered

    takers = sorted(
        name
        for name, handler in registered().items()
        if PICTURE in getattr(handler, "file_fields", ()) and not getattr(handler, "registrable", False)
    )
    if not takers:
        raise Invalid("no installed model takes a style picture")
    return takers[0]


def label(spec: JobSpec, kind: str, picture_name: str | None) -> str:
    """What a person reads: a registered model's name, else the handler's own label (its picture by the name
    it came with, not by its key in the store): styles:7, style-image:painting."""
    if spec.model != kind:
        return spec.model
    shown = spec.model_copy(update={PICTURE: picture_name}) if picture_name else spec
    return get_handler(kind).label(shown)


def _check(spec: JobSpec) -> None:
    from restyle.handlers.base import check

    check(spec)


def is_records(params: JobParams | None) -> bool:
    """Whether the job's handler writes records (a .jsonl output) rather than video."""
    return is_records_kind(params.kind if params is not None else "")


def is_records_kind(kind: str) -> bool:
    """Whether the handler ``kind`` writes records (a .jsonl output) rather than video."""
    from restyle.handlers.base import OutputKind, registered

    handler = registered().get(kind)
    return handler is not None and getattr(handler, "output", None) == OutputKind.RECORDS
