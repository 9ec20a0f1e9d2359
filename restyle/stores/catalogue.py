"""The catalogue's records: models admins registered, and pictures submitters saved.

Kept in the job store's database (same engine, tables of their own); the files themselves
are in the system store by content hash (``models/<sha256>.onnx``,
``pictures/<owner>/<sha256>``), so one file registered twice is stored once and a job
pinned to a file's hash keeps it even if a name is later given to another file.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Engine, Float, Integer, String, Text, delete, func, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class _Base(DeclarativeBase):
    pass


class ModelRow(_Base):
    __tablename__ = "catalogue_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # the handler that runs it: onnx, yolo, or a plugin's
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(200))  # in the system store
    size: Mapped[int] = mapped_column(BigInteger)
    output: Mapped[str] = mapped_column(String(32))  # the handler's output kind: frames, scaled-frames, records
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")


class PictureRow(_Base):
    __tablename__ = "catalogue_pictures"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[float] = mapped_column(Float)


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
    """Rows for registered models and saved pictures, on the job store's engine."""

    def __init__(self, engine: Engine):
        try:
            _Base.metadata.create_all(engine)
        except (OperationalError, ProgrammingError, IntegrityError):  # another process made them between look and make
            _Base.metadata.create_all(engine)
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
        return removed, not others

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

