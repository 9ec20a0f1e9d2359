"""Multipart forms: the job form (a video, its JobSpec fields, perhaps a style picture) and the catalogue's.

Readers raise :class:`~restyle.errors.Invalid` (422), like every other refusal; the ``*_FORM``
dicts describe the forms in the OpenAPI document (FastAPI cannot see a form read by hand).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData, UploadFile

from restyle.config import Settings
from restyle.errors import Invalid
from restyle.jobspec import load_json
from restyle.service.catalogue import NAME
from restyle.service.http.multipart import PartLimit
from restyle.service.specs import Picture


def job_parts(settings: Settings) -> dict[str, PartLimit]:
    """The job form's file parts, each with its own limit (read with :func:`.multipart.limited_form`)."""
    return {
        "file": PartLimit(settings.max_upload_bytes, "the video", "RESTYLE_MAX_UPLOAD_BYTES"),
        "style_image": PartLimit(settings.max_picture_bytes, "the style picture", "RESTYLE_MAX_PICTURE_BYTES"),
    }


def job_form(form: FormData, blanks_absent: bool = False) -> tuple[UploadFile, dict[str, Any], Picture | None]:
    """A multipart job form: the video (``file``), the JobSpec fields, and a style picture file if one came.
    ``params`` and ``output`` are JSON objects in text. An empty field is a value like any other (the JobSpec
    refuses it), except with ``blanks_absent``: the dashboard's form sends every input, the unfilled ones empty."""
    video = form.get("file")
    if not isinstance(video, UploadFile):
        raise Invalid("a job needs the video: a file in the form field 'file'")
    return video, *spec_form(form, blanks_absent)


def spec_form(form: FormData, blanks_absent: bool = False) -> tuple[dict[str, Any], Picture | None]:
    """A form's JobSpec fields and its style picture file, if one came (its video, ``file``, is not read here)."""
    fields: dict[str, Any] = {}
    picture = None
    for name, value in form.multi_items():
        if name == "file":
            continue
        if isinstance(value, UploadFile):
            if name != "style_image":
                raise Invalid(f"only 'file' and 'style_image' take files, not {name[:40]!r}")
            if value.filename:
                picture = Picture(value.file, value.filename)
            continue
        if value == "" and blanks_absent:
            continue
        if name in ("params", "output"):
            try:
                value = load_json(value, name)
            except Invalid as exc:
                raise Invalid(f"{name} must be a JSON object, e.g. {name}={{...}}: {exc}") from None
        fields[name] = value
    return fields, picture


def text(form: FormData, name: str, default: str | None = None) -> str:
    value = form.get(name, default)
    if not isinstance(value, str) or not value:
        raise Invalid(f"the form needs the field {name!r}")
    return value


def file(form: FormData, name: str) -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise Invalid(f"the form needs a file in the field {name!r}")
    return value


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_FILE = {"type": "string", "format": "binary"}
_NAME = {"type": "string", "pattern": NAME.pattern, "description": "1-64 letters, digits, '.', '_', '-'"}
JOB_FORM = _form(
    {
        "file": _FILE | {"description": "the video"},
        "model": {
            "type": "string",
            "description": "styles (default), style-image, or a registered model's name (GET /api/models)",
        },
        "style": {"type": "string", "description": 'styles: 0-25 or a blend "3:0.5,12:0.5"'},
        "style_image": {
            "description": "style-image: a picture file, or the name of a picture you saved (POST /api/pictures)"
        },
        "strength": {"type": "number", "description": "0..1; less mixes the original back in"},
        "deflicker": {"type": "number", "description": "0 off, 0.8 the usual"},
        "params": {"type": "string", "description": "the model's other parameters, a JSON object"},
        "output": {"type": "string", "description": 'a JSON object: {"container": "mkv", "crf": 20}'},
        "webhook": {"type": "string", "description": "an http(s) URL told when the job ends (Standard Webhooks)"},
    },
    ["file"],
)
MODEL_FORM = _form(
    {
        "name": _NAME | {"description": "not a handler's name (styles, style-image, onnx, yolo)"},
        "file": _FILE | {"description": "the ONNX file"},
        "kind": {
            "type": "string",
            "description": "auto (default: yolo for Ultralytics exports, else onnx), onnx, yolo, or a plugin handler",
        },
    },
    ["name", "file"],
)
DATASET_FORM = _form(
    {
        "prefix": {"type": "string", "description": "a folder of your space; empty: its top"},
        "files": {
            "type": "array",
            "items": _FILE,
            "description": "the files; a name may hold folders (a/b.jpg), kept under the prefix",
        },
    },
    ["files"],
)
PICTURE_FORM = _form(
    {"name": _NAME, "file": _FILE | {"description": "the picture (any format PIL reads)"}}, ["name", "file"]
)
