"""What a job does, as the job store keeps it: :class:`JobParams`, stored as JSON in the job's row.

One shape for every door (API JSON and multipart, the dashboard, inbox sidecars)::

    {"spec": JobSpec (its files as system-store keys), "handler": "yolo", "label": "moderation",
     "webhook": "https://hooks.example.com/restyle"}

and, for an inbox drop whose sidecar was refused, ``"refused": reason`` (its worker fails it with
that reason). Rows written before this class, in the same dict shape, load as they are; a row
that cannot be read (written by hand, or by another version) loads as ``None`` with the reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from restyle.jobspec import JobSpec


class JobParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", protected_namespaces=())

    spec: JobSpec = Field(default_factory=JobSpec)
    handler: str | None = None  # the handler that runs it (a registered model's kind); None: spec.model
    label: str | None = None  # what a person reads: styles:7, style-image:painting, moderation
    refused: str | None = None  # a job made only to fail with this reason
    # Where its end is announced (restyle.service.webhooks), checked at the door. Not in the spec: it changes
    # nothing the job does, so it is no part of what the job's output is fingerprinted by.
    webhook: str | None = None

    @property
    def kind(self) -> str:
        """The handler that runs the job."""
        return self.handler or self.spec.model

    def stored(self) -> dict[str, Any]:
        """The JSON the job's row holds."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def load(cls, stored: Any) -> tuple[JobParams | None, str | None]:
        """(params, None), or (None, why they cannot be read)."""
        if isinstance(stored, JobParams):
            return stored, None
        try:
            return cls.model_validate(stored if isinstance(stored, dict) else {}), None
        except ValidationError as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
