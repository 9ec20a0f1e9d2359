"""Deployment settings in one place: embedded defaults, a TOML file, then RESTYLE_* environment variables.

What a job does (model, style, strength, deflicker, output) is not here: that is the
job's :class:`restyle.jobspec.JobSpec`. These are how restyle runs: stores, engine,
workers, limits, and the encoder defaults a JobSpec may override.

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

from restyle.jobspec import JobSpec, Preset

SUPERFAST_PARAMS = "mbtree=1:rc-lookahead=10"


def _config_file() -> Path:
    return Path(os.environ.get("RESTYLE_CONFIG", "restyle.toml"))


class Settings(BaseSettings):
    """Every knob restyle has, with the defaults that fit a laptop."""

    model_config = SettingsConfigDict(env_prefix="RESTYLE_", extra="ignore")

    # -- engine --------------------------------------------------------------
    engine: Literal["local", "ray"] = Field(
        "local", description="where chunks run: a local process pool, or a Ray cluster"
    )
    ray_address: str = Field("", description="the Ray cluster: host:port of its head, ray://..., or empty for 'auto'")
    ray_cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each model actor asks Ray for (its model threads)")
    ray_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs each model actor asks Ray for (1 on GPU nodes)")
    ray_actors: int = Field(0, ge=0, description="model actors; 0: as many as the cluster's CPUs allow")
    ray_node_ip: str = Field("", description="this machine's address in the cluster, if it runs several Ray nodes")
    ray_actor_idle_seconds: float = Field(
        60.0, gt=0, description="an actor idle this long is stopped: its CPUs go to other models, its node may go"
    )
    ray_scale_on_queue: bool = Field(
        True, description="ask Ray's autoscaler for room for queued and running jobs; withdrawn when none"
    )
    ray_actors_per_job: int = Field(
        2,
        ge=1,
        description="actors asked of the autoscaler per queued or running job; a job's fewest if ray_actors is 0",
    )
    ray_max_requested_actors: int = Field(
        32, ge=0, description="at most this many actors asked of the autoscaler at once"
    )
    ray_scale_seconds: float = Field(
        5.0, gt=0, description="how often the scaler reads the queue and renews its request"
    )
    node_cache: Path = Field(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restyle" / "files",
        description="a Ray node's cache of files shipped from drivers (model weights, style pictures), by SHA-256; "
        "read on each node from that node's own settings",
    )
    node_cache_bytes: int = Field(
        4 * 1024**3, gt=0, description="the node cache is trimmed to this, least recently used first"
    )
    workers: int = Field(0, ge=0, description="worker processes; 0 picks one per core (memory allowing)")
    threads: int = Field(0, ge=0, description="onnxruntime intra-op threads per worker; 0 picks cores / workers")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto uses CUDA when onnxruntime has it")
    backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="auto: the one precision picks (OpenVINO when installed, else onnxruntime; onnxruntime on a GPU)",
    )
    precision: Literal["auto", "f32", "bf16", "int8"] = Field(
        "auto",
        description="auto: bf16 on CPUs with native bf16, int8 on CPUs without, for networks that pass the measured "
        "fidelity bar (restyle/runtime/fidelity.py), else f32; f32: exact; bf16: OpenVINO bfloat16 regardless; "
        "int8: the shipped int8 network (restyle/runtime/quantize.py) regardless",
    )
    batch_size: int = Field(0, ge=0, description="frames per model call; 0 picks 1 on CPU, 8 on GPU")
    worker_memory: int = Field(
        0,
        ge=0,
        description="bytes a run's workers may use in all; 0: what the machine (or its cgroup) has available. "
        "Sets how many workers start, and refuses frames one worker cannot hold (restyle/engines/sizing.py)",
    )

    max_models: int = Field(
        2,
        ge=1,
        description="loaded models each worker keeps (on Ray: each process's kinds of actor); least recently used go "
        "first; locally, one that ran frames over 640x360 is let go after each chunk "
        "(the next job's budget has no room for them)",
    )

    # -- stuck tasks (restyle/engines/deadline.py) ------------------------------
    task_retries: int = Field(
        3, ge=0, description="a task that got stuck (on Ray: or lost its worker) is given out again this many times"
    )
    task_stall_floor_s: float = Field(
        120.0, gt=0, description="how long a task may make no frames before the first (its worker loads, opens...)"
    )
    task_stall_factor: float = Field(
        10.0, gt=0, description="then it may make no progress for this many times its frames left at the measured speed"
    )
    task_stall_minimum_s: float = Field(
        60.0, gt=0, description="... and never less than this; past it, its worker is killed and the task retried"
    )

    # -- plan ----------------------------------------------------------------
    chunk_seconds: float = Field(4.0, gt=0, description="target chunk length; chunks are the unit of work and resume")

    # -- encode --------------------------------------------------------------
    codec: str = Field("libx264", description="video encoder for the restyled frames")
    crf: int = Field(18, ge=0, le=51, description="x264 constant rate factor: lower is better quality")
    # superfast plus x264's macroblock tree (veryfast's look-ahead), not veryfast: on restyled frames it costs
    # 2/3 of veryfast's CPU for 3% less size and the same or better quality, flat regions included
    # (bench/encoder.py, bench/RESULTS.md) — CPU the model gets instead.
    preset: Preset = Field("superfast", description="x264 preset; slower presets cost CPU the model could use")
    x264_params: str | None = Field(
        None,
        description='x264 options added to the preset, "key=value:key=value"; unset: '
        f'"{SUPERFAST_PARAMS}" with superfast (its look-ahead back), nothing with any other preset',
    )
    tenant_min_crf: int = Field(
        16, ge=0, le=51, description="the lowest crf a submitter's job may ask for (admins: any); lower is larger"
    )
    tenant_slowest_preset: Preset = Field(
        "medium", description="the slowest preset a submitter's job may ask for (admins: any, placebo included)"
    )
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
        "",
        description="bearer tokens, comma-separated NAME:ROLE:SECRET (ROLE admin or submitter); "
        "none: an admin token is made in home",
    )
    link_seconds: int = Field(3600, gt=0, description="how long a presigned download or upload link works")
    max_upload_bytes: int = Field(2 * 1024**3, gt=0)
    max_model_bytes: int = Field(500 * 1024**2, gt=0, description="largest model file an admin may register")
    max_picture_bytes: int = Field(
        20 * 1024**2, gt=0, description="largest style picture a submitter may upload or save"
    )
    max_picture_pixels: int = Field(40_000_000, gt=0, description="width x height of a style picture")
    sidecar_wait_seconds: float = Field(
        5.0,
        ge=0,
        description="how long the trigger waits for VIDEO.json beside a dropped video before it uses the default",
    )
    submit_rate_per_minute: float = Field(
        60.0, ge=0, description="jobs one token may submit a minute on average; 0: no limit"
    )
    submit_burst: int = Field(20, ge=1, description="jobs one token may submit at once before the rate applies")
    store_rate_per_minute: float = Field(
        30.0,
        ge=0,
        description="pictures, dataset uploads and models one token may store a minute on average; 0: no limit",
    )
    store_burst: int = Field(10, ge=1, description="of those, how many one token may store at once")

    # -- service: quotas (per tenant, counted at the door before a body is read; admins have none) --
    quota_jobs: int = Field(
        100, ge=0, description="jobs one tenant may have uploading, queued or running at once (429 past it); 0: none"
    )
    quota_bytes: int = Field(
        20 * 1024**3,
        ge=0,
        description="bytes one tenant may keep stored: its videos waiting in the inbox, its datasets, its pictures "
        "(413 past it); 0: none",
    )
    quota_pictures: int = Field(200, ge=0, description="pictures one tenant may save (429 past it); 0: none")
    quota_bytes_seconds: float = Field(
        30.0, gt=0, description="how long a tenant's stored bytes, once listed, are taken as they were"
    )

    # -- service: request guard (decided from the headers, before a body is read) --
    max_request_bytes: int = Field(
        1024**2, gt=0, description="largest body that is not a video upload (JSON, small forms)"
    )
    body_idle_seconds: float = Field(
        30.0, gt=0, description="longest wait for the next piece of a request body (408 after)"
    )
    body_min_rate: int = Field(
        8 * 1024, ge=0, description="bytes/s a body must average once body_grace_seconds are over (slower: 408); 0 off"
    )
    body_grace_seconds: float = Field(
        10.0, ge=0, description="how long a body may start slowly before body_min_rate applies"
    )
    login_rate_per_minute: float = Field(
        10.0, ge=0, description="sign-in attempts one address may make a minute; 0: no limit"
    )
    login_burst: int = Field(5, ge=1)
    metrics_token: str = Field("", description="when set, /metrics takes it (or an admin token) as a bearer token")
    metrics_public: bool = Field(
        False, description="/metrics open to anyone who reaches it; off: it needs the metrics token or an admin token"
    )
    session_seconds: float = Field(
        7 * 24 * 3600.0, gt=0, description="how long a dashboard sign-in lasts (signing out ends it at once)"
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description="mark the session cookie Secure (and send HSTS): auto when the request came over https "
        "(a proxy says so in X-Forwarded-Proto, trusted from --forwarded-allow-ips) or public_url is https",
    )
    upload_expiry_seconds: float = Field(
        300.0, ge=0, description="after a presigned upload link expires, how long its job waits before it is expired"
    )

    # -- service: jobs and workers --------------------------------------------
    local_workers: int = Field(1, ge=0, description="worker processes that restyle serve starts")
    lease_seconds: float = Field(30.0, gt=0, description="a job whose worker is silent this long is taken again")
    max_attempts: int = Field(3, ge=1)
    store_retry_seconds: float = Field(
        60.0, ge=0, description="how long an unreachable object store or job store is waited for before a job fails"
    )
    poll_seconds: float = Field(
        2.0, gt=0, description="how often the trigger lists the inbox (events make jobs at once)"
    )
    retention_days: float = Field(
        7.0,
        ge=0,
        description="a job's output, stills and log are deleted this many days after it ended (0 keeps them); "
        "its input is deleted keep_inputs_hours after it ends",
    )
    keep_inputs_hours: float = Field(
        24.0,
        ge=0,
        description="an ended job's input is kept this many hours, for Retry and Run again without a new upload "
        "(0: deleted a minute after the job ends)",
    )
    retention_sweep_seconds: float = Field(
        300.0, gt=0, description="how often restyle serve deletes ended jobs' files and unused style pictures"
    )
    inbox_rescan_seconds: float = Field(
        600.0,
        gt=0,
        description="how often the trigger lists the whole inbox; in between, a local inbox's folders that did not "
        "change are not listed again, and an S3 inbox is listed every poll_seconds only while its store sends no "
        "events",
    )
    idle_seconds: float = Field(1.0, gt=0, description="how often an idle worker asks for a job")
    tenant_priorities: dict[str, int] = Field(
        default_factory=dict,
        description="owner -> priority (higher first, 0 for an owner not named) among owners with as many jobs "
        'running, e.g. RESTYLE_TENANT_PRIORITIES=\'{"alice": 10}\'; inbox drops are owner "@inbox"',
    )
    max_batch_items: int = Field(100_000, ge=1, description="inputs one batch may hold; a larger prefix is refused")
    batch_images_per_job: int = Field(
        64, ge=1, description="images of a batch per work unit (a job); its engine scores them 16 to a task"
    )
    batch_sweep_seconds: float = Field(
        5.0, gt=0, description="how often a worker looks for batches whose last unit ended without it"
    )
    inbox_spec: JobSpec = Field(
        default_factory=JobSpec,
        description="what a video dropped in the inbox without a sidecar gets, "
        'e.g. RESTYLE_INBOX_SPEC=\'{"style": "7"}\'',
    )

    # -- service: webhooks (a job or batch that names a URL is told when it ends) --
    webhook_allowed_hosts: str = Field(
        "",
        description="comma-separated hosts (names, *.domain, IP addresses or networks like 10.1.0.0/16) that webhooks "
        "may reach, internal ones included; empty: any host whose addresses are all public",
    )
    webhook_retries: int = Field(
        5, ge=0, le=30, description="deliveries tried again this often while the receiver is down or answers non-2xx"
    )
    webhook_backoff_seconds: float = Field(
        1.0, gt=0, description="the wait before the first retry; each later wait is twice the one before"
    )
    webhook_connect_seconds: float = Field(5.0, gt=0, description="how long a delivery waits to connect")
    webhook_read_seconds: float = Field(10.0, gt=0, description="how long a delivery waits for the answer")
    webhook_catchup_seconds: float = Field(
        3600.0,
        ge=0,
        description="at start, jobs that ended this long ago or less and have no summary yet get theirs "
        "(and their webhook) then",
    )

    def x264_params_for(self, preset: str) -> str:
        """The x264 options a segment encoded at ``preset`` gets beside the preset's own."""
        if self.x264_params is not None:
            return self.x264_params
        return SUPERFAST_PARAMS if preset == "superfast" else ""

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
