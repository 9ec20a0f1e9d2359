"""The catalogue's routes: registered models (admins add and remove, everyone lists), saved style
pictures (each submitter's own), and the 26 built-in styles' thumbnails for the dashboard's gallery.

Uploads are refused from their declared Content-Length before a byte is read (413 over the
limit, 411 without one); what arrives is counted again as it is copied.
"""
from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from restyle.service import gallery
from restyle.service.catalogue import NAME, Catalogue, Refused, check_declared_length
from restyle.service.guard import FORM_OVERHEAD
from restyle.service.context import Context, Principal
from restyle.service.jobs_api import caller



def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_FILE = {"type": "string", "format": "binary"}
_NAME = {"type": "string", "pattern": NAME.pattern, "description": "1-64 letters, digits, '.', '_', '-'"}
JOB_FORM = _form({
    "file": _FILE | {"description": "the video"},
    "model": {"type": "string", "description": "styles (default), style-image, or a registered model's name (GET /api/models)"},
    "style": {"type": "string", "description": 'styles: 0-25 or a blend "3:0.5,12:0.5"'},
    "style_image": {"description": "style-image: a picture file, or the name of a picture you saved (POST /api/pictures)"},
    "strength": {"type": "number", "description": "0..1; less mixes the original back in"},
    "deflicker": {"type": "number", "description": "0 off, 0.8 the usual"},
    "params": {"type": "string", "description": "the model's other parameters, a JSON object"},
    "output": {"type": "string", "description": 'a JSON object: {"container": "mkv", "crf": 20}'},
}, ["file"])
MODEL_FORM = _form({"name": _NAME | {"description": "not a handler's name (styles, style-image, onnx, yolo)"}, "file": _FILE | {"description": "the ONNX file"},
                    "kind": {"type": "string", "description": "auto (default: yolo for Ultralytics exports, else onnx), onnx, yolo, or a plugin handler"}},
                   ["name", "file"])
PICTURE_FORM = _form({"name": _NAME, "file": _FILE | {"description": "the picture (any format PIL reads)"}}, ["name", "file"])


class ModelOut(BaseModel):
    name: str
    kind: str
    output: str
    size: int
    sha256: str
    added_by: str
    added_at: float


class PictureOut(BaseModel):
    name: str
    size: int
    width: int
    height: int
    sha256: str
    added_at: float


def admin(request: Request) -> Principal:
    who = caller(request)
    if not who.is_admin:
        raise HTTPException(403, "registering and removing models is for admins")
    return who


def mount(app: FastAPI, context: Context) -> None:
    settings = context.settings

    def catalogue() -> Catalogue:
        return Catalogue.of(context)

    @app.get("/api/models", response_model=list[ModelOut], summary="Registered models; jobs name them (model=NAME)")
    def list_models(who: Principal = Depends(caller)) -> list[ModelOut]:
        return [ModelOut(**vars(m)) for m in catalogue().models()]

    @app.post("/api/models", status_code=201, response_model=ModelOut, openapi_extra=MODEL_FORM,
              summary="Register an ONNX model under a name (admins): checked, stored by content hash")
    async def add_model(request: Request, who: Principal = Depends(admin)) -> ModelOut:
        check_declared_length(request.headers.get("content-length"), settings.max_model_bytes + FORM_OVERHEAD,
                              "model", "RESTYLE_MAX_MODEL_BYTES")
        async with request.form(max_files=1, max_fields=4) as form:
            name, file = _text(form, "name"), _file(form, "file")
            kind = _text(form, "kind", "auto")
            model = await run_in_threadpool(catalogue().register, name, file.file, kind=kind, added_by=who.name,
                                            filename=file.filename or "model.onnx")
        return ModelOut(**vars(model))

    @app.delete("/api/models/{name}", response_model=ModelOut, summary="Remove a registered model (admins)")
    def remove_model(name: str, who: Principal = Depends(admin)) -> ModelOut:
        return ModelOut(**vars(catalogue().remove(name)))

    @app.get("/api/pictures", response_model=list[PictureOut], summary="Your saved style pictures")
    def list_pictures(who: Principal = Depends(caller)) -> list[PictureOut]:
        return [PictureOut(**_picture(p)) for p in catalogue().pictures(who.name)]

    @app.post("/api/pictures", status_code=201, response_model=PictureOut, openapi_extra=PICTURE_FORM,
              summary="Save a style picture under a name, for your jobs (style_image=NAME)")
    async def save_picture(request: Request, who: Principal = Depends(caller)) -> PictureOut:
        check_declared_length(request.headers.get("content-length"), settings.max_picture_bytes + FORM_OVERHEAD,
                              "style picture", "RESTYLE_MAX_PICTURE_BYTES")
        async with request.form(max_files=1, max_fields=3) as form:
            name, file = _text(form, "name"), _file(form, "file")
            picture = await run_in_threadpool(catalogue().save_picture, who.name, name, file.file)
        return PictureOut(**_picture(picture))

    @app.delete("/api/pictures/{name}", response_model=PictureOut, summary="Delete one of your saved pictures")
    def delete_picture(name: str, who: Principal = Depends(caller)) -> PictureOut:
        return PictureOut(**_picture(catalogue().delete_picture(who.name, name)))

    @app.get("/api/styles/{style}/thumbnail", summary="A built-in style's thumbnail (JPEG), for the gallery",
             response_class=Response, responses={200: {"description": "the thumbnail", "content": {
                 "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
    def style_thumbnail(style: int, who: Principal = Depends(caller)) -> Response:
        if not 0 <= style < gallery.NUM_STYLES:
            raise HTTPException(404, f"the styles are 0 to {gallery.NUM_STYLES - 1}")
        return Response(gallery.thumbnail(context, style), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


def _picture(picture) -> dict[str, Any]:
    return {name: getattr(picture, name) for name in PictureOut.model_fields}


def _text(form, name: str, default: str | None = None) -> str:
    value = form.get(name, default)
    if not isinstance(value, str) or not value:
        raise Refused(422, f"the form needs the field {name!r}")
    return value


def _file(form, name: str) -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise Refused(422, f"the form needs a file in the field {name!r}")
    return value
