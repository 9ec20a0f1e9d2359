"""The service's catalogue: models admins register by name, pictures submitters save for reuse.

Files go to the system store by content hash; their records to the job store's database
(:mod:`restyle.stores.catalogue`). Everything is checked on the way in: a model must
load and fit its handler's kind, a picture must be a picture restyle can read, and both
have size limits (``max_model_bytes``, ``max_picture_bytes``, ``max_picture_pixels``).
A saved picture is its owner's alone: another tenant's lookups find nothing.

Refusals are the domain's :class:`~restyle.errors.Refusal` kinds (Invalid, NotFound, Conflict,
TooLarge), with a reason a person can act on; the web face maps them to statuses, the CLI prints
the same reason.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import BinaryIO

from restyle.errors import Conflict, Invalid, ModelError, NotFound, RestyleError
from restyle.service import facts, keys
from restyle.service.context import Context
from restyle.service.spool import Spooled, spooled
from restyle.stores.catalogue import NameTaken, RegisteredModel, SavedPicture

_MAKING_GRAPHS = threading.Lock()
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str, what: str) -> str:
    if not NAME.match(name or ""):
        raise Invalid(
            f"a {what} name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit; "
            f"got {name[:80]!r}"
        )
    return name


def handler_names() -> set[str]:
    from restyle.handlers.base import registered

    return set(registered())


class Catalogue:
    """Registered models and saved pictures of one service."""

    def __init__(self, context: Context):
        self.context = context
        self.store = context.catalogue_store

    # -- models --------------------------------------------------------------

    def register(
        self, name: str, stream: BinaryIO, *, kind: str = "auto", added_by: str, filename: str = "model.onnx"
    ) -> RegisteredModel:
        """Check and store a model file under ``name``; Conflict if the name is taken, Invalid if it does not fit."""
        check_name(name, "model")
        if name in handler_names():
            raise Conflict(f"{name!r} is a handler's name; choose another name for the model")
        if self.store.model(name):
            raise Conflict(
                f"a model named {name!r} is registered already; remove it first (restyle models remove {name})"
            )
        settings = self.context.settings
        with spooled(stream, settings.max_model_bytes, "model file", "RESTYLE_MAX_MODEL_BYTES", filename) as file:
            kind = _kind_of(file.path) if kind == "auto" else kind
            handler = _file_handler(kind)
            _check_model(kind, file.path)
            self.store.keep_graph(file.sha256, facts.weightless(file.path) or b"")  # what doors check jobs against
            key = keys.model(file.sha256)
            if not self.context.system.exists(key):
                self.context.system.put_file(file.path, key)
            model = RegisteredModel(
                name=name,
                kind=kind,
                sha256=file.sha256,
                key=key,
                size=file.size,
                output=str(handler.output),
                added_by=added_by,
                added_at=time.time(),
            )
        try:
            return self.store.add_model(model)
        except NameTaken:
            raise Conflict(f"a model named {name!r} is registered already") from None

    def model(self, name: str) -> RegisteredModel | None:
        return self.store.model(name) if NAME.match(name or "") else None

    def graph_file(self, model: RegisteredModel) -> Path | None:
        """The model's weightless graph as a local file, for a door's check (:mod:`.facts`); None for a file that
        is not ONNX. A model registered before graphs were kept has its graph made now, once: its file's one read."""
        folder = self.context.settings.home / "cache" / "graphs"
        if (folder / f"{model.sha256}.onnx").is_file():
            return folder / f"{model.sha256}.onnx"
        graph = self.store.graph(model.sha256)
        if graph is None:
            with _MAKING_GRAPHS:  # a burst of doors naming an older model reads its file once, not once each
                graph = self.store.graph(model.sha256)
                if graph is None:
                    graph = facts.weightless(local_copy(self.context, model.key)) or b""
                    self.store.keep_graph(model.sha256, graph)
        return facts.graph_file(folder, model.sha256, graph) if graph else None

    def stand_in_picture(self) -> Path:
        """What a door's check gets in place of a picture that was checked when it came in (:mod:`.facts`)."""
        return facts.stand_in_picture(self.context.settings.home / "cache" / "graphs")

    def models(self) -> list[RegisteredModel]:
        return self.store.models()

    def remove(self, name: str) -> RegisteredModel:
        removed, last = self.store.remove_model(name) if NAME.match(name or "") else (None, False)
        if removed is None:
            raise NotFound(f"no model named {name[:64]!r}")
        if last:  # queued jobs pinned to the file fail with a reason; nothing else refers to it
            self.context.system.delete(removed.key)
        return removed

    # -- pictures ------------------------------------------------------------

    def store_picture(self, owner: str, stream: BinaryIO) -> tuple[str, tuple[int, int], Spooled]:
        """Check a picture and store it under its owner by content hash: (key, (width, height), file facts)."""
        settings = self.context.settings
        with spooled(stream, settings.max_picture_bytes, "style picture", "RESTYLE_MAX_PICTURE_BYTES") as file:
            size = check_picture(file.path, settings.max_picture_pixels)
            key = keys.picture(owner, file.sha256)
            if not self.context.system.exists(key):
                self.context.system.put_file(file.path, key)
            return key, size, Spooled(Path(key), file.size, file.sha256)

    def save_picture(self, owner: str, name: str, stream: BinaryIO) -> SavedPicture:
        check_name(name, "picture")
        if self.store.picture(owner, name):
            raise Conflict(f"you have a picture named {name!r} already; delete it first")
        key, (width, height), file = self.store_picture(owner, stream)
        picture = SavedPicture(
            owner=owner,
            name=name,
            sha256=file.sha256,
            key=key,
            size=file.size,
            width=width,
            height=height,
            added_at=time.time(),
        )
        try:
            return self.store.add_picture(picture)
        except NameTaken:
            raise Conflict(f"you have a picture named {name!r} already") from None

    def picture(self, owner: str, name: str) -> SavedPicture:
        """The owner's picture of that name; NotFound for anyone else's (or none)."""
        found = self.store.picture(owner, name) if NAME.match(name or "") else None
        if found is None:
            raise NotFound(f"you have no saved picture named {name[:64]!r} (see GET /api/pictures)")
        return found

    def pictures(self, owner: str) -> list[SavedPicture]:
        return self.store.pictures(owner)

    def delete_picture(self, owner: str, name: str) -> SavedPicture:
        removed = self.store.remove_picture(owner, name) if NAME.match(name or "") else None
        if removed is None:
            raise NotFound(f"you have no saved picture named {name[:64]!r}")
        # Its file goes too, unless another of the owner's names is the same file or a job that has not ended uses
        # it (then it stays for that job: jobs are pinned to its hash).
        used = self.store.picture_users(owner, removed.key) or self.context.jobs.active_use(owner, removed.key)
        if not used:
            self.context.system.delete(removed.key)
        return removed


def check_picture(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a picture restyle reads (its content decides the format, among the pipeline's
    IMAGE_FORMATS only: never PostScript, which PIL renders with Ghostscript, nor ICO/ICNS, which hold a PNG of any
    size); Invalid otherwise. Decoded once, here: its size is kept with it, and no door decodes it again."""
    from PIL import Image, UnidentifiedImageError

    from restyle.pipeline.images import IMAGE_FORMATS

    # PIL's own limit too (it warns past it and refuses past twice it), so that a format that opens a
    # picture inside a picture stops before decoding a bomb; the header check below refuses from 1x.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise Invalid(
                    f"the style picture is {width}x{height}, over the limit of {max_pixels} pixels "
                    "(RESTYLE_MAX_PICTURE_PIXELS)"
                )
            image.load()
    except Invalid:
        raise
    except UnidentifiedImageError:
        raise Invalid(
            f"the style picture cannot be read as an image: it is not a picture restyle reads "
            f"({', '.join(IMAGE_FORMATS)})"
        ) from None
    except Image.DecompressionBombError:
        raise Invalid(
            f"the style picture is over the limit of {max_pixels} pixels (RESTYLE_MAX_PICTURE_PIXELS)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        detail = str(exc).replace(str(path), "the file")[:160]  # the server's paths are nobody else's business
        raise Invalid(f"the style picture cannot be read as an image ({type(exc).__name__}: {detail})") from None
    if width < 1 or height < 1:
        raise Invalid("the style picture has no pixels")
    return width, height


def local_copy(context: Context, key: str) -> Path:
    """A file of the system store as a local path: the file itself in a folder store, else a cached copy
    (keys are content hashes, so a cached copy is never stale)."""
    if context.system.is_local:
        path = Path(context.system.path(key))
        if not path.is_file():
            raise ModelError(f"{key} is missing from the system store (was it removed from the catalogue?)")
        return path
    cached = context.settings.home / "cache" / key
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
    try:
        context.system.get_file(key, partial)
        os.replace(partial, cached)
    except RestyleError as exc:
        raise ModelError(f"{key} cannot be fetched from the system store: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return cached


def _kind_of(path: Path) -> str:
    """The registrable handler that recognizes the file by its ONNX metadata (yolo: ``names``), else onnx."""
    from restyle.handlers.base import kind_for_file

    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's errors for a file that is no model
        detail = str(exc).replace(str(path.parent) + "/", "")[:160]
        raise Invalid(f"the model does not load: it is not an ONNX file ({type(exc).__name__}: {detail})") from None
    return kind_for_file({prop.key: prop.value for prop in graph.metadata_props})


def _file_handler(kind: str):
    from restyle.handlers.base import file_kinds, get_handler

    try:
        handler = get_handler(kind)
    except ModelError as exc:
        raise Invalid(str(exc)) from None
    if not getattr(handler, "registrable", False):
        raise Invalid(
            f"the {kind} handler has weights of its own; register models of kind "
            f"{', '.join(file_kinds())} or a plugin's"
        )
    return handler


def _check_model(kind: str, path: Path) -> None:
    """The handler's own check, on the file: it loads and its inputs and outputs fit the kind."""
    from restyle.handlers.base import check
    from restyle.jobspec import JobSpec

    try:
        check(JobSpec(model=kind, model_file=str(path)))
    except Exception as exc:  # noqa: BLE001 - a plugin's check may raise anything: still a refusal, never a 500
        detail = str(exc) if isinstance(exc, RestyleError) else f"{type(exc).__name__}: {exc}"
        detail = detail.replace(str(path.parent) + "/", "")[:300]  # the file's own name stays, its folder goes
        raise Invalid(f"the model was refused as kind {kind}: {detail}") from None
