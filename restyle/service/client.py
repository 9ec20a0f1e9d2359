"""A small client for the API, used by `restyle submit`, `restyle jobs` and `restyle job`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from restyle.config import Settings
from restyle.errors import RestyleError
from restyle.service.context import admin_token


class ServiceError(RestyleError):
    """The service refused a request or could not be reached."""


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, server: str | None = None, token: str | None = None) -> Client:
        """Server and token from the arguments, else RESTYLE_SERVER / RESTYLE_TOKEN, else the local service's."""
        server = server or os.environ.get("RESTYLE_SERVER") or settings.base_url
        token = token or os.environ.get("RESTYLE_TOKEN") or _local_admin_token(settings)
        return cls(server, token)

    def submit(self, path: Path, style: str = "0", strength: float = 1.0, deflicker: float = 0.0) -> dict[str, Any]:
        if not path.is_file():
            raise ServiceError(f"not found: {path}")
        with path.open("rb") as video:
            return self._call("POST", "/api/jobs", files={"file": (path.name, video, "video/mp4")},
                              data={"style": style, "strength": str(strength), "deflicker": str(deflicker)})

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/api/jobs", params={"state": state} if state else None)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/jobs/{job_id}/cancel")

    def log(self, job_id: str) -> str:
        return self._call("GET", f"/api/jobs/{job_id}/log", text=True)

    def output_link(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/jobs/{job_id}/output")

    def download(self, job_id: str, target: Path) -> Path:
        url = self.output_link(job_id)["url"]
        with httpx.stream("GET", url, timeout=120) as response:
            if response.status_code != 200:
                raise ServiceError(f"download refused ({response.status_code}): {response.read().decode()[:200]}")
            with target.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        return target

    def _call(self, method: str, path: str, text: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the service at {self._http.base_url}: {exc} (is `restyle serve` running?)") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ServiceError(f"{method} {path}: {response.status_code} {detail}")
        return response.text if text else response.json()


def _local_admin_token(settings: Settings) -> str:
    token_file = settings.home / "admin.token"
    if not token_file.is_file():
        raise ServiceError("no token: pass --token, set RESTYLE_TOKEN, or run `restyle serve` once on this machine")
    return admin_token(settings)
