"""Settings in one place: embedded defaults, a TOML file, then RESTYLE_* environment variables.

Nothing needs configuring to start. To change a default, either set an environment
variable (``RESTYLE_CRF=18``) or write a TOML file (``restyle.toml`` in the current
directory, or the path in ``RESTYLE_CONFIG``)::

    crf = 18
    preset = "medium"
    chunk_seconds = 6
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _config_file() -> Path:
    return Path(os.environ.get("RESTYLE_CONFIG", "restyle.toml"))


class Settings(BaseSettings):
    """Every knob restyle has, with the defaults that fit a laptop."""

    model_config = SettingsConfigDict(env_prefix="RESTYLE_", extra="ignore")

    # -- engine --------------------------------------------------------------
    engine: Literal["local", "ray"] = Field("local", description="where chunks run: a local process pool, or a Ray cluster")
    ray_address: str = Field("", description="the Ray cluster: host:port of its head, ray://..., or empty for 'auto'")
    ray_cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each model actor asks Ray for (its model threads)")
    ray_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs each model actor asks Ray for (1 on GPU nodes)")
    ray_actors: int = Field(0, ge=0, description="model actors; 0: as many as the cluster's CPUs allow")
    ray_node_ip: str = Field("", description="this machine's address in the cluster, if it runs several Ray nodes")
    workers: int = Field(0, ge=0, description="worker processes; 0 picks one per core (memory allowing)")
    threads: int = Field(0, ge=0, description="onnxruntime intra-op threads per worker; 0 picks cores / workers")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when onnxruntime has it")
    backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto", description="auto: the one precision picks (OpenVINO when installed, else onnxruntime; onnxruntime on a GPU)"
    )
    precision: Literal["auto", "f32", "bf16"] = Field(
        "auto",
        description="auto: bf16 on CPUs with native bf16 for networks that pass the measured fidelity bar "
        "(restyle/fidelity.py), else f32; f32: exact; bf16: OpenVINO bfloat16 regardless",
    )
    batch_size: int = Field(0, ge=0, description="frames per model call; 0 picks 1 on CPU, 8 on GPU")
    worker_memory: int = Field(
        0, ge=0, description="bytes a run's workers may use in all; 0: what the machine (or its cgroup) has available. "
        "Sets how many workers start, and refuses frames one worker cannot hold (restyle/layout.py)"
    )

    deflicker: float = Field(
        0.0, ge=0, le=1, description="temporal smoothing strength (0 off; --deflicker alone means 0.8); also for inbox jobs"
    )

    # -- plan ----------------------------------------------------------------
    chunk_seconds: float = Field(4.0, gt=0, description="target chunk length; chunks are the unit of work and resume")

    # -- encode --------------------------------------------------------------
    codec: str = Field("libx264", description="video encoder for the restyled frames")
    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor: lower is better quality")
    preset: str = Field("veryfast", description="x264 preset; slower presets cost CPU the model could use")
    pix_fmt: str = Field("yuv420p", description="output pixel format (yuv420p plays everywhere)")
    encoder_threads: int = Field(1, ge=0, description="x264 threads per worker; 0 lets x264 decide")

    # -- input limits (probe refuses anything beyond them) -------------------
    max_input_bytes: int = Field(20 * 1024**3, gt=0)
    max_duration_s: float = Field(4 * 3600.0, gt=0)
    max_pixels: int = Field(4096 * 2304, gt=0, description="width x height of one frame")
    max_frames: int = Field(1_000_000, gt=0)

    # -- service: stores ----------------------------------------------------
    home: Path = Field(Path.home() / ".restyle", description="where the embedded stores live")
    data_url: str = Field("", description="data store (inbox/, outbox/); default: a folder under home")
    system_url: str = Field("", description="system store (work, logs, stills); default: a folder under home")
    database_url: str = Field("", description="job store; default: SQLite under home")
    s3_endpoint_url: str = Field("", description="for s3:// stores that are not AWS, e.g. http://127.0.0.1:8333")
    s3_region: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""

    # -- service: API ---------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = Field("", description="how users reach the API, for links; default http://host:port")
    tokens: str = Field(
        "", description="bearer tokens, comma-separated NAME:ROLE:SECRET (ROLE admin or submitter); none: an admin token is made in home"
    )
    link_seconds: int = Field(3600, gt=0, description="how long a presigned download or upload link works")
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    submit_rate_per_minute: float = Field(60.0, ge=0, description="jobs one token may submit a minute on average; 0: no limit")
    submit_burst: int = Field(20, ge=1, description="jobs one token may submit at once before the rate applies")

    # -- service: jobs and workers --------------------------------------------
    local_workers: int = Field(1, ge=0, description="worker processes that restyle serve starts")
    lease_seconds: float = Field(30.0, gt=0, description="a job whose worker is silent this long is taken again")
    max_attempts: int = Field(3, ge=1)
    store_retry_seconds: float = Field(
        60.0, ge=0, description="how long an unreachable object store or job store is waited for before a job fails"
    )
    poll_seconds: float = Field(2.0, gt=0, description="how often the trigger lists the inbox (events make jobs at once)")
    idle_seconds: float = Field(1.0, gt=0, description="how often an idle worker asks for a job")
    default_style: str = Field("0", description="style for jobs made from files dropped in the inbox")
    default_strength: float = Field(1.0, ge=0, le=1)

    @property
    def data(self) -> str:
        return self.data_url or str(self.home / "data")

    @property
    def system(self) -> str:
        return self.system_url or str(self.home / "system")

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'jobs.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then RESTYLE_* env vars, then the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))


def load_settings(**overrides: object) -> Settings:
    """Settings from defaults, the TOML file and the environment; ``overrides`` win (None is ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
