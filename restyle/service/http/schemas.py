"""What the API answers and takes, as pydantic models; :func:`job_out` is the one mapping from a Job
(a batch's mappings are in :mod:`.batches`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from restyle.errors import ModelError
from restyle.handlers.base import get_handler
from restyle.jobspec import JobSpec, check_text
from restyle.service.keys import shown_name
from restyle.stores.catalogue import RegisteredModel, SavedPicture
from restyle.stores.jobs import Job, JobState
from restyle.stores.states import BatchState, ItemState


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    owner: str
    state: JobState
    input: str
    model: str  # what runs, in words: styles:7, style-image:painting, moderation
    spec: dict[str, Any]  # the JobSpec (its files as the service's keys)
    style: str | None
    strength: float
    deflicker: float
    attempts: int
    max_attempts: int
    created_at: float  # Unix seconds, as before; the same moments in ISO 8601 UTC below
    updated_at: float
    started_at: float | None = None
    finished_at: float | None
    submitted: datetime = Field(..., description="when the job was made, ISO 8601 UTC")
    started: datetime | None = Field(None, description="when a worker first took it, ISO 8601 UTC")
    finished: datetime | None = Field(None, description="when it ended, ISO 8601 UTC")
    updated: datetime = Field(..., description="its last change, ISO 8601 UTC")
    duration_s: float | None = Field(None, description="finished - started, once it has ended")
    queue_ahead: int | None = Field(
        None, description="a queued job: about how many jobs workers take before it (fair order, as it stands now)"
    )
    reason: str | None
    progress: dict[str, int | float | None]  # frames/chunks done and in all, and eta_s (None until a speed is seen)
    figures: dict[str, Any]
    records: dict[str, Any] | None  # records jobs: frames with detections, counts per class
    chunks_redone: int
    output_ready: bool
    webhook: str | None = None  # where the job's end is announced
    # What may be done to it now (restyle.service.actions): cancel, retry, rerun, delete; and until when its input
    # is kept for retry and rerun (an ended job; RESTYLE_KEEP_INPUTS_HOURS).
    actions: list[str] = []
    input_kept_until: float | None = None


def shown_label(spec: JobSpec) -> str:
    """The handler's label for a spec stored without one (params of an older version); its model's name if
    that handler is gone."""
    try:
        return get_handler(spec.model).label(spec)
    except ModelError:
        return spec.model


def utc(moment: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime (the API writes it ISO 8601: ``2026-12-03T09:41:07.250000Z``)."""
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


def job_out(job: Job, eta_s: float | None, queue_ahead: int | None = None) -> JobOut:
    """A job as the API shows it; a job whose stored params cannot be read still lists, as ``unreadable``."""
    if job.params is None:
        spec, label = {}, "unreadable"
    else:
        spec, label = job.params.spec.model_dump(mode="json"), job.params.label or shown_label(job.params.spec)
    figures = job.figures or {}
    return JobOut(
        id=job.id,
        owner=job.owner,
        state=job.state,
        input=shown_name(job.input_key),  # an upload's name as the person gave it (no random prefix)
        model=str(label),
        spec=spec,
        style=spec.get("style"),
        strength=spec.get("strength", 1.0),
        deflicker=spec.get("deflicker", 0.0),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        submitted=utc(job.created_at),
        started=utc(job.started_at),
        finished=utc(job.finished_at),
        updated=utc(job.updated_at),
        duration_s=round(job.finished_at - job.started_at, 3) if job.finished_at and job.started_at else None,
        queue_ahead=queue_ahead,
        reason=job.reason,
        progress={
            "frames_done": job.frames_done,
            "frames_total": job.frames_total,
            "chunks_done": job.chunks_done,
            "chunks_total": job.chunks_total,
            "eta_s": eta_s,
        },
        figures=figures,
        records=figures.get("records"),
        chunks_redone=job.chunks_redone,
        output_ready=job.state == JobState.SUCCEEDED,
        webhook=job.params.webhook if job.params is not None else None,
    )


class SpecRequest(BaseModel):
    """The JobSpec fields of a new job (checked as a JobSpec: see GET /api/models for the models); a field not
    given takes its default. The body of POST /api/jobs/{id}/rerun, which runs a job's stored video again."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="styles, style-image, or a registered model's name")
    style: str | None = Field(None, description='styles: 0-25 or a blend "3:0.5,12:0.5"')
    style_image: str | None = Field(
        None, description="style-image: the name of a picture you saved (POST /api/pictures)"
    )
    strength: float | None = None
    deflicker: float | None = Field(None, description="temporal smoothing strength; 0 off, 0.8 the usual")
    params: dict[str, Any] | None = Field(None, description="the model's other per-call parameters")
    output: dict[str, Any] | None = Field(None, description="container, codec, crf, preset")
    model_file: str | None = Field(None, description="not taken: an admin registers model files (POST /api/models)")
    webhook: str | None = Field(
        None,
        description="an http(s) URL told when the job ends (Standard Webhooks; GET /api/webhook-secret)",
    )

    def spec_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"filename"}, exclude_none=True)


class UploadRequest(SpecRequest):
    """The video's name and the JobSpec fields (checked as a JobSpec: see GET /api/models for the models)."""

    filename: str = Field(..., min_length=1, max_length=300)

    @field_validator("filename")
    @classmethod
    def _filename(cls, filename: str) -> str:
        return check_text(filename, "filename")


class UploadLink(BaseModel):
    job: JobOut
    upload_url: str
    method: str = Field(
        "PUT", description="PUT the video's bytes, or POST a multipart form: the fields, then the file as 'file'"
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="form fields a POST upload must send before the file"
    )
    expires_at: int


class Link(BaseModel):
    url: str
    expires_at: int


class ModelOut(BaseModel):
    name: str
    kind: str
    output: str
    size: int
    sha256: str
    added_by: str
    added_at: float

    @classmethod
    def of(cls, model: RegisteredModel) -> ModelOut:
        return cls.model_validate(model, from_attributes=True)  # the stored record's fields, less its store key


class PictureOut(BaseModel):
    name: str
    size: int
    width: int
    height: int
    sha256: str
    added_at: float

    @classmethod
    def of(cls, picture: SavedPicture) -> PictureOut:
        return cls.model_validate(picture, from_attributes=True)  # the stored record's fields, less key and owner


class WebhookSecret(BaseModel):
    owner: str
    secret: str = Field(..., description="whsec_ + base64: verify each delivery's webhook-signature with it")


class BatchIn(BaseModel):
    """A batch: every object under a prefix of your space in the data store, one JobSpec."""

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(
        "",
        max_length=300,
        description="a folder of your own space in the data store (datasets/<you>/<prefix>/); empty: all of it",
    )
    spec: dict[str, Any] = Field(default_factory=dict, description="the JobSpec's fields, as a job takes them")
    max_failures: str | int | None = Field(
        None, description='the batch stops once more items than this failed: a count ("5") or a share ("10%")'
    )
    webhook: str | None = Field(None, description="an http(s) URL told of the batch's end")


class BatchProgress(BaseModel):
    total: int
    done: int  # ended, whichever way
    succeeded: int
    failed: int
    reused: int
    not_run: int
    left: int
    frames: int
    eta_s: float | None  # None until a speed is seen, and once it has ended


class BatchOut(BaseModel):
    """A batch as the API shows it."""

    id: str
    owner: str
    state: BatchState
    prefix: str  # the source prefix, in the owner's space
    output: str  # the prefix its outputs and manifest are under, in the data store
    model: str
    spec: dict[str, Any]
    max_failures: str | None
    reason: str | None  # why it stopped, or was cancelled
    progress: BatchProgress
    created_at: float
    updated_at: float
    finished_at: float | None
    manifest: str | None  # the manifest's key once the batch has ended


class ItemOut(BaseModel):
    """One input of a batch: a manifest row, with its place and its unit."""

    seq: int
    input: str
    size: int
    version: str
    kind: str
    state: ItemState
    reason: str | None
    output: str | None
    frames: int
    seconds: float
    runtime: str
    precision: str
    node: str
    job: str | None


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_after: int | None = Field(None, description="pass as ?after= for the next page; null on the last")


class DatasetOut(BaseModel):
    prefix: str  # in your space: what a batch names to take them
    files: list[str]  # stored under it, as named
