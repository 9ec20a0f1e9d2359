"""/api/models, /api/pictures, /api/styles: registered models (admins add and remove, everyone lists), saved
style pictures (each submitter's own), and the built-in styles' thumbnails for the dashboard's gallery.

Sizes are the guard's business (the policy table gives these routes their files' limits); what
arrives is counted again as it is copied (:func:`restyle.service.spool.spooled`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from restyle.errors import NotFound
from restyle.service import gallery
from restyle.service.catalogue import Catalogue
from restyle.service.context import Principal
from restyle.service.http import forms
from restyle.service.http.auth import admin, caller
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.schemas import ModelOut, PictureOut
from restyle.service.http.web import Web, web

router = APIRouter(route_class=PolicyRoute)


def catalogue(app: Web = Depends(web)) -> Catalogue:
    return Catalogue(app.context)


@router.get("/api/models", response_model=list[ModelOut], summary="Registered models; jobs name them (model=NAME)")
def list_models(who: Principal = Depends(caller), books: Catalogue = Depends(catalogue)) -> list[ModelOut]:
    return [ModelOut.of(m) for m in books.models()]


@router.post(
    "/api/models",
    status_code=201,
    response_model=ModelOut,
    openapi_extra=forms.MODEL_FORM,
    summary="Register an ONNX model under a name (admins): checked, stored by content hash",
)
async def add_model(
    request: Request, who: Principal = Depends(admin), books: Catalogue = Depends(catalogue)
) -> ModelOut:
    async with request.form(max_files=1, max_fields=4) as form:
        name, file = forms.text(form, "name"), forms.file(form, "file")
        kind = forms.text(form, "kind", "auto")
        model = await run_in_threadpool(
            books.register, name, file.file, kind=kind, added_by=who.name, filename=file.filename or "model.onnx"
        )
    return ModelOut.of(model)


@router.delete("/api/models/{name}", response_model=ModelOut, summary="Remove a registered model (admins)")
def remove_model(name: str, who: Principal = Depends(admin), books: Catalogue = Depends(catalogue)) -> ModelOut:
    return ModelOut.of(books.remove(name))


@router.get("/api/pictures", response_model=list[PictureOut], summary="Your saved style pictures")
def list_pictures(who: Principal = Depends(caller), books: Catalogue = Depends(catalogue)) -> list[PictureOut]:
    return [PictureOut.of(p) for p in books.pictures(who.name)]


@router.post(
    "/api/pictures",
    status_code=201,
    response_model=PictureOut,
    openapi_extra=forms.PICTURE_FORM,
    summary="Save a style picture under a name, for your jobs (style_image=NAME)",
)
async def save_picture(
    request: Request, who: Principal = Depends(caller), books: Catalogue = Depends(catalogue)
) -> PictureOut:
    async with request.form(max_files=1, max_fields=3) as form:
        name, file = forms.text(form, "name"), forms.file(form, "file")
        picture = await run_in_threadpool(books.save_picture, who.name, name, file.file)
    return PictureOut.of(picture)


@router.delete("/api/pictures/{name}", response_model=PictureOut, summary="Delete one of your saved pictures")
def delete_picture(name: str, who: Principal = Depends(caller), books: Catalogue = Depends(catalogue)) -> PictureOut:
    return PictureOut.of(books.delete_picture(who.name, name))


@router.get(
    "/api/styles/{style}/thumbnail",
    summary="A built-in style's thumbnail (JPEG), for the gallery",
    response_class=Response,
    responses={
        200: {
            "description": "the thumbnail",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def style_thumbnail(style: int, who: Principal = Depends(caller), app: Web = Depends(web)) -> Response:
    count = gallery.style_count()
    if not 0 <= style < count:
        raise NotFound(f"the styles are 0 to {count - 1}")
    return Response(
        app.gallery.thumbnail(style), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
