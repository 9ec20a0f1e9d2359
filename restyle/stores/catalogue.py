"""The catalogue's records: models admins registered, and pictures submitters saved.

Kept in the job store's database (same engine, tables of their own); the files themselves
are in the system store by content hash (``models/<sha256>.onnx``,
``pictures/<owner>/<sha256>``), so one file registered twice is stored once and a job
pinned to a file's hash keeps it even if a name is later given to another file.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from restyle.stores.tables import ModelGraphRow, ModelRow, PictureRow


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    kind: str
    sha256: str
    key: str
    size: int
    output: str
    added_by: str
    added_at: float
    note: str = ""


@dataclass(frozen=True)
class SavedPicture:
    owner: str
    name: str
    sha256: str
    key: str
    size: int
    width: int
    height: int
    added_at: float


class NameTaken(Exception):
    """A model or picture of that name exists already."""


class CatalogueStore:
    """Rows for registered models and saved pictures, on the job store's engine (which made their tables)."""

    def __init__(self, engine: Engine):
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- models --------------------------------------------------------------

    def add_model(self, model: RegisteredModel) -> RegisteredModel:
        try:
            with self._session.begin() as session:
                session.add(ModelRow(**vars(model)))
        except IntegrityError:
            raise NameTaken(model.name) from None
        return model

    def model(self, name: str) -> RegisteredModel | None:
        with self._session() as session:
            row = session.get(ModelRow, name)
            return _model(row) if row else None

    def models(self) -> list[RegisteredModel]:
        with self._session() as session:
            return [_model(row) for row in session.scalars(select(ModelRow).order_by(ModelRow.name))]

    def remove_model(self, name: str) -> tuple[RegisteredModel | None, bool]:
        """(the removed model, whether no other name still uses its file)."""
        with self._session.begin() as session:
            row = session.get(ModelRow, name, with_for_update=True)
            if row is None:
                return None, False
            removed = _model(row)
            session.delete(row)
            session.flush()
            others = session.scalar(select(func.count()).select_from(ModelRow).where(ModelRow.sha256 == removed.sha256))
            if not others:
                session.execute(delete(ModelGraphRow).where(ModelGraphRow.sha256 == removed.sha256))
        return removed, not others

    def keep_graph(self, sha256: str, graph: bytes) -> None:
        """Keep a model file's weightless graph (once: a second keeper of the same file finds it kept)."""
        try:
            with self._session.begin() as session:
                if session.get(ModelGraphRow, sha256) is None:
                    session.add(ModelGraphRow(sha256=sha256, graph=graph))
        except IntegrityError:
            pass  # another process kept it first: the same bytes

    def graph(self, sha256: str) -> bytes | None:
        """The weightless graph kept for a model file; None if none was kept (a model registered before them)."""
        with self._session() as session:
            row = session.get(ModelGraphRow, sha256)
            return bytes(row.graph) if row is not None else None

    # -- pictures ------------------------------------------------------------

    def add_picture(self, picture: SavedPicture) -> SavedPicture:
        try:
            with self._session.begin() as session:
                session.add(PictureRow(**vars(picture)))
        except IntegrityError:
            raise NameTaken(picture.name) from None
        return picture

    def picture(self, owner: str, name: str) -> SavedPicture | None:
        with self._session() as session:
            row = session.get(PictureRow, (owner, name))
            return _picture(row) if row else None

    def pictures(self, owner: str) -> list[SavedPicture]:
        with self._session() as session:
            query = select(PictureRow).where(PictureRow.owner == owner).order_by(PictureRow.name)
            return [_picture(row) for row in session.scalars(query)]

    def picture_count(self, owner: str) -> int:
        with self._session() as session:
            return int(session.scalar(select(func.count()).select_from(PictureRow).where(PictureRow.owner == owner)))

    def picture_users(self, owner: str, key: str) -> int:
        """How many of ``owner``'s saved pictures are the file ``key`` (one file, saved under several names)."""
        with self._session() as session:
            query = select(func.count()).select_from(PictureRow).where(PictureRow.owner == owner, PictureRow.key == key)
            return int(session.scalar(query) or 0)

    def remove_picture(self, owner: str, name: str) -> SavedPicture | None:
        with self._session.begin() as session:
            row = session.get(PictureRow, (owner, name))
            if row is None:
                return None
            removed = _picture(row)
            session.execute(delete(PictureRow).where(PictureRow.owner == owner, PictureRow.name == name))
        return removed


def _model(row: ModelRow) -> RegisteredModel:
    return RegisteredModel(**{name: getattr(row, name) for name in RegisteredModel.__dataclass_fields__})


def _picture(row: PictureRow) -> SavedPicture:
    return SavedPicture(**{name: getattr(row, name) for name in SavedPicture.__dataclass_fields__})
