"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript for live progress."""
from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from restyle.service.context import Context
from restyle.service.jobs_api import COOKIE, JobOut, caller, model_params, submit_upload, submitter, visible_job

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["ago"] = lambda t: "-" if not t else f"{max(0, time.time() - t):.0f} s ago"


def mount(app: FastAPI, context: Context) -> None:
    def signed_in(request: Request):
        try:
            return caller(request)
        except HTTPException:
            return None

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str = ""):
        return templates.TemplateResponse(request, "login.html", {"error": error, "who": None})

    @app.post("/login", include_in_schema=False)
    def login(token: str = Form(...)):
        if token not in context.tokens:
            return RedirectResponse("/login?error=That+token+is+not+known", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=7 * 24 * 3600)
        return response

    @app.get("/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        jobs = context.jobs.list(owner=None if who.is_admin else who.name, limit=200)
        return templates.TemplateResponse(request, "jobs.html", {"who": who, "jobs": [JobOut.of(j) for j in jobs]})

    @app.post("/submit", include_in_schema=False)
    def submit(request: Request, file: UploadFile = File(...), style: str = Form("0"), strength: float = Form(1.0),
               deflicker: float = Form(0.0)):
        who = submitter(request)
        job = submit_upload(context, who, file.file, file.filename or "video.mp4", model_params(style, strength, deflicker))
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: str):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        job = visible_job(context, who, job_id)
        log = ""
        if who.is_admin:
            try:
                log = context.system.get_bytes(f"logs/{job.id}.jsonl").decode()
            except Exception:  # noqa: BLE001 - no log yet
                log = ""
        return templates.TemplateResponse(request, "job.html", {"who": who, "job": JobOut.of(job), "log": log})

    @app.get("/workers", response_class=HTMLResponse, include_in_schema=False)
    def workers_page(request: Request):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        if not who.is_admin:
            raise HTTPException(403, "workers are for admins")
        return templates.TemplateResponse(request, "workers.html", {"who": who, "workers": context.jobs.workers()})
