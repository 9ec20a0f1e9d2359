"""A small client for the API, used by `restyle submit`, `restyle jobs`, `restyle job`, `restyle batch`,
`restyle batches`, `restyle models`, `restyle pictures` and `restyle webhook-secret`. It imports no server
code: no SQLAlchemy, no fsspec, no FastAPI (a test keeps it so)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from restyle.client.local import server_url
from restyle.config import Settings
from restyle.errors import ServiceError


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0, found_by: str = ""):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        self._found_by = found_by  # where the URL came from, for the error when nothing answers there

    @classmethod
    def from_settings(cls, settings: Settings, server: str | None = None, token: str | None = None) -> Client:
        """The server from --server, else RESTYLE_SERVER, else the URL the local `restyle serve` wrote into its home,
        else the default; the token from --token, else RESTYLE_TOKEN, else the local service's admin token."""
        url, found_by = server_url(settings, server)
        token = token or os.environ.get("RESTYLE_TOKEN") or _local_admin_token(settings)
        return cls(url, token, found_by=found_by)

    def submit(
        self,
        path: Path,
        *,
        model: str | None = None,
        style: str | None = None,
        style_image: str | Path | None = None,
        strength: float | None = None,
        deflicker: float | None = None,
        params: dict | None = None,
        output: dict | None = None,
        webhook: str | None = None,
    ) -> dict[str, Any]:
        """Upload a video with its JobSpec fields. ``style_image`` is a picture file (uploaded with the job)
        or the name of a picture saved on the service; ``webhook`` a URL told when the job ends."""
        if not path.is_file():
            raise ServiceError(f"not found: {path}")
        data = {
            name: str(value)
            for name, value in (
                ("model", model),
                ("style", style),
                ("strength", strength),
                ("deflicker", deflicker),
                ("webhook", webhook),
            )
            if value is not None
        }
        data |= {name: json.dumps(value) for name, value in (("params", params), ("output", output)) if value}
        picture = Path(style_image) if style_image is not None and Path(style_image).is_file() else None
        if style_image is not None and picture is None:
            data["style_image"] = str(style_image)  # a saved picture's name
        with contextlib.ExitStack() as files:
            parts = {"file": (path.name, files.enter_context(path.open("rb")), "video/mp4")}
            if picture is not None:
                parts["style_image"] = (
                    picture.name,
                    files.enter_context(picture.open("rb")),
                    "application/octet-stream",
                )
            return self._call("POST", "/api/jobs", files=parts, data=data)

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/models")

    def add_model(self, name: str, path: Path, kind: str = "auto") -> dict[str, Any]:
        if not path.is_file():
            raise ServiceError(f"not found: {path}")
        with path.open("rb") as model:
            return self._call(
                "POST",
                "/api/models",
                files={"file": (path.name, model, "application/octet-stream")},
                data={"name": name, "kind": kind},
                timeout=600,
            )

    def remove_model(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/models/{quote(name, safe='')}")

    def pictures(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/pictures")

    def save_picture(self, name: str, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise ServiceError(f"not found: {path}")
        with path.open("rb") as picture:
            return self._call(
                "POST",
                "/api/pictures",
                files={"file": (path.name, picture, "application/octet-stream")},
                data={"name": name},
            )

    def delete_picture(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/pictures/{quote(name, safe='')}")

    def webhook_secret(self, owner: str | None = None) -> dict[str, Any]:
        """The secret that signs this token's webhook deliveries (an admin may name another owner)."""
        return self._call("GET", "/api/webhook-secret", params={"owner": owner} if owner else None)

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/api/jobs", params={"state": state} if state else None)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{quote(job_id, safe='')}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/jobs/{quote(job_id, safe='')}/cancel")

    def retry(self, job_id: str) -> dict[str, Any]:
        """Queue a failed, dead or cancelled job again; the chunks it stored are reused."""
        return self._call("POST", f"/api/jobs/{quote(job_id, safe='')}/retry")

    def rerun(self, job_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A new job of ``job_id``'s stored video with ``spec`` (JobSpec fields; a picture by its saved name)."""
        return self._call("POST", f"/api/jobs/{quote(job_id, safe='')}/rerun", json=spec)

    def delete(self, job_id: str) -> None:
        """Delete an ended job with its output, stills, log and stored chunks."""
        self._call("DELETE", f"/api/jobs/{quote(job_id, safe='')}", text=True)

    def log(self, job_id: str) -> str:
        return self._call("GET", f"/api/jobs/{quote(job_id, safe='')}/log", text=True)

    def output_link(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{quote(job_id, safe='')}/output")

    def download(self, job_id: str, target: Path) -> Path:
        url = self.output_link(job_id)["url"]
        with httpx.stream("GET", url, timeout=120) as response:
            if response.status_code != 200:
                raise ServiceError(f"download refused ({response.status_code}): {response.read().decode()[:200]}")
            with target.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        return target

    def submit_batch(
        self, prefix: str, spec: dict[str, Any], max_failures: str | None = None, webhook: str | None = None
    ) -> dict[str, Any]:
        """A batch over every object under ``prefix`` in your space of the service's data store."""
        body = {"prefix": prefix, "spec": spec, "max_failures": max_failures, "webhook": webhook}
        return self._call("POST", "/api/batches", json={k: v for k, v in body.items() if v is not None}, timeout=600)

    def upload_folder(self, prefix: str, folder: Path, per_request: int = 200) -> list[str]:
        """Every file under ``folder`` (hidden ones and links left out, as a batch does) into your space under
        ``prefix``, its tree kept, a few hundred files a request; the names stored."""
        if not folder.is_dir():
            raise ServiceError(f"not a folder: {folder}")
        paths = sorted(
            path
            for path in folder.rglob("*")
            if path.is_file()
            and not path.is_symlink()
            and not any(p.startswith(".") for p in path.relative_to(folder).parts)
        )
        if not paths:
            raise ServiceError(f"{folder} holds no files to upload")
        stored: list[str] = []
        for start in range(0, len(paths), per_request):
            with contextlib.ExitStack() as files:
                parts = [
                    ("files", (path.relative_to(folder).as_posix(), files.enter_context(path.open("rb"))))
                    for path in paths[start : start + per_request]
                ]
                done = self._call("POST", "/api/datasets", files=parts, data={"prefix": prefix}, timeout=600)
            stored += done["files"]
        return stored

    def batches(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/api/batches", params={"limit": limit})

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/batches/{quote(batch_id, safe='')}")

    def batch_items(self, batch_id: str, state: str | None = None, page: int = 500) -> Iterator[dict[str, Any]]:
        """Every item of a batch (of ``state``), a page at a time."""
        after: int | None = -1
        while after is not None:
            params = {"after": after, "limit": page} | ({"state": state} if state else {})
            found = self._call("GET", f"/api/batches/{quote(batch_id, safe='')}/items", params=params)
            yield from found["items"]
            after = found["next_after"]

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/batches/{quote(batch_id, safe='')}/cancel")

    def _call(self, method: str, path: str, text: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            found_by = f" (from {self._found_by})" if self._found_by else ""
            raise ServiceError(
                f"cannot reach the service at {self._http.base_url}{found_by}: {_one_line(str(exc))}; "
                "is `restyle serve` running? Point elsewhere with --server URL or RESTYLE_SERVER"
            ) from None
        if response.status_code >= 400:
            raise ServiceError(f"{method} {path}: {response.status_code} {refusal(response)}")
        return response.text if text else response.json()


def refusal(response: httpx.Response) -> str:
    """The API's reason for a 4xx/5xx as one line: FastAPI's list of field errors as `field: message; ...`."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(_field_error(error) for error in detail)
    return _one_line(str(detail))[:500]


def _field_error(error: object) -> str:
    if not isinstance(error, dict):
        return str(error)
    where = [str(part) for part in error.get("loc", ()) if part not in ("query", "body", "path", "header", "form")]
    message = str(error.get("msg", error))
    return f"{'.'.join(where)}: {message}" if where else message


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _local_admin_token(settings: Settings) -> str:
    """The admin token a local `restyle serve` keeps in its home (the service writes it there on first start)."""
    token_file = settings.home / "admin.token"
    token = token_file.read_text().strip() if token_file.is_file() else ""
    if not token:
        raise ServiceError("no token: pass --token, set RESTYLE_TOKEN, or run `restyle serve` once on this machine")
    return token
