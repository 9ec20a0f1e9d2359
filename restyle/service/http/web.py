"""What the web face's routes share, per app (``app.state.web``): the domain's context, the trigger, the
notifier, the retention sweep, and the app's own state (the ETA's speedometer, the gallery's thumbnails).
Routes declare it: ``Depends(web)``."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from restyle.service import actions
from restyle.service.context import Context
from restyle.service.eta import Speedometer
from restyle.service.gallery import Gallery
from restyle.service.http.schemas import JobOut, job_out
from restyle.service.notifier import Notifier
from restyle.service.retention import Retention
from restyle.service.trigger import Trigger
from restyle.stores.jobs import Job, JobState


@dataclass
class Web:
    context: Context
    trigger: Trigger
    gallery: Gallery
    notifier: Notifier
    retention: Retention
    speeds: Speedometer = field(default_factory=Speedometer)

    @classmethod
    def of(cls, context: Context) -> Web:
        return cls(context, Trigger(context), Gallery(context), Notifier(context), Retention(context))

    def job_out(self, job: Job, place: bool = False) -> JobOut:
        """The job as the API shows it, with what may be done to it now; with ``place``, a queued job's place in
        the queue too (one more query)."""
        ahead = None
        if place and job.state == JobState.QUEUED:
            ahead = self.context.jobs.ahead(job.id, self.context.settings.tenant_priorities)
        shown = job_out(job, self.speeds.eta(job), ahead)
        kept = actions.input_kept_until(self.context, job)
        return shown.model_copy(update={"actions": actions.available(job), "input_kept_until": kept})


def web(request: Request) -> Web:
    return request.app.state.web
