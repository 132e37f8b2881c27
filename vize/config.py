"""Settings, read from the environment with the ``VIZE_`` prefix."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vize.services.invites import SignupMode


class Settings(BaseSettings):
    """Every knob of the service. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="VIZE_", extra="ignore")

    data_dir: Path = Field(
        Path("./data"),
        description="SQLite, the generated secret key, the outbox; by default blobs and ONNX too.",
    )
    database_url: str = Field("", description="SQLAlchemy URL; empty = SQLite in data_dir.")
    broker_url: str = Field("", description="Redis URL; set it to run jobs on Celery workers.")
    storage_dir: Path | None = Field(
        None, description="Blob store folder (images, models); default data_dir/blobs."
    )
    storage_url: str = Field(
        "",
        description="s3://bucket/prefix: blobs in S3-compatible object storage (AWS_* variables "
        "give endpoint, region, credentials); empty = the storage_dir folder.",
    )
    onnx_dir: Path | None = Field(
        None,
        description="Where backbones converted to ONNX are cached; default data_dir/onnx.",
    )
    host: str = Field("127.0.0.1", description="Address `vize serve` binds to.")
    port: int = Field(8000, description="Port `vize serve` listens on.")
    public_url: str = Field("", description="Base URL used in links; default from the request.")
    secret_key: str = Field("", description="Signs session cookies; default: generated once.")
    default_user: str = Field("admin", description="User created on first start (empty: none).")
    min_images_per_label: int = Field(20, description="Images each label needs to train.")
    review_max_predictions: int = Field(
        1000,
        ge=1,
        description="Images kept for review per task (store_images); the oldest go beyond.",
    )
    max_upload_bytes: int = Field(10 * 1024 * 1024, description="Largest image accepted.")
    max_image_pixels: int = Field(40_000_000, description="Decompression-bomb guard.")
    max_decode_bytes: int = Field(
        256 * 1024 * 1024,
        description="Memory one image may take to decode (413 beyond); also the budget of all "
        "decodes running at once.",
    )
    max_batch_body_bytes: int = Field(
        24 * 1024 * 1024,
        description="Largest body of /v2/classify or a JSON training-image batch (413 beyond).",
    )
    max_json_body_bytes: int = Field(
        8 * 1024 * 1024, description="Largest body of any other API write (413 beyond)."
    )
    backbone: str = Field(
        "efficientnet_lite0",
        description="Embedding backbone(s) for new trainings, comma-separated to concatenate.",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="Backbone precision of new trainings: `fp32`, or `int8` (static "
        "quantisation built at conversion time, ~0.6x the forward time, -1.6 points on the "
        "dev suite); a model keeps its own.",
    )
    flip_augment: bool = Field(False, description="Also train on horizontally flipped images.")
    embed_on_upload: bool = Field(
        True, description="Embed new images in the background so training starts warm."
    )
    embed_backlog: int = Field(
        256,
        description="Uploaded images waiting for background embedding beyond which uploads "
        "get 429 with Retry-After (0 = no limit).",
    )
    embed_backlog_seconds: float = Field(
        3.0,
        description="While classifications are served, also refuse uploads once the backlog "
        "would take longer than this to embed at the measured rate (never below 16 images; "
        "0 = count only).",
    )
    train_threads: int = Field(
        2, description="Images a `vize worker` embeds in parallel (about its cores)."
    )
    inference_threads: int = Field(
        2,
        description="Cores for inference: threads of each forward (one at a time, concurrent "
        "requests batched) and of the decoding pool.",
    )
    url_fetch_timeout: float = Field(
        10.0, description="Seconds for all the `_url` images of one request together."
    )
    url_fetches_per_user: int = Field(
        4, description="URL fetches one user may have in flight at once (0 = no cap)."
    )
    url_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts exempt from the SSRF guard (tests only)."
    )
    smtp_url: str = Field("", description="smtp://user:pass@host:port; empty = outbox folder.")
    mail_from: str = Field("vize@localhost", description="Sender of notification emails.")
    notify_start_after_seconds: float = Field(
        60,
        description="A 'training started' email is sent only once a training has run this "
        "long (short trainings: one email, when they end); 0 = at the start.",
    )
    classify_rate_per_minute: int = Field(
        0, description="Images a user may classify per minute (429 beyond); 0 = no limit."
    )
    monthly_quota: int = Field(
        0, description="Images a user may classify per calendar month (429 beyond); 0 = none."
    )
    signup: SignupMode = Field(
        SignupMode.OPEN,
        description="Who may create an account on the web: `open`, `invite` (links made by "
        "`vize users invite NAME`) or `closed`.",
    )
    signups_per_minute: int = Field(
        5, description="Sign-up attempts per client address per minute before 429; 0 = none."
    )
    auth_failures_per_minute: int = Field(
        20, description="Failed logins / bad tokens per client address per minute before 429."
    )
    image_url_ttl_seconds: int = Field(
        86400, ge=60, description="How long the signed img_path / thumb_img_path links work."
    )
    trusted_proxies: str = Field(
        "",
        description="Proxies (addresses or CIDR networks, comma-separated) whose "
        "`X-Forwarded-For` is believed; empty: none, the peer address counts.",
    )
    warm_up: bool = Field(True, description="Load the backbones at start, not on first use.")
    embedded_worker: bool = Field(True, description="Run jobs in a thread of the server.")
    orphan_grace_seconds: float = Field(
        3600.0,
        description="Age after which a stored file no row references is deleted by the sweep.",
    )
    orphan_sweep_interval_seconds: float = Field(
        3600.0,
        description="The background orphan sweep runs right after start, then about this often "
        "(one node at a time); 0 = only once after start.",
    )
    orphan_sweep: bool = Field(True, description="Run the background orphan sweep on this node.")

    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as readable text or as one JSON object per line."
    )
    log_level: str = Field("INFO", description="Lowest level logged (DEBUG, INFO, WARNING...).")
    metrics_token: str = Field(
        "", description="Bearer token that may read /metrics (empty: no token accepted)."
    )
    metrics_allow: list[str] = Field(
        default_factory=list,
        description="Client networks that may read /metrics without a token (JSON list, e.g. "
        '["127.0.0.1/32", "10.0.0.0/8"]); with neither set /metrics is 404.',
    )
    worker_metrics_address: str = Field(
        "",
        description="`host:port` where `vize worker` serves its own /metrics (same token / "
        "networks as the API's); empty = none.",
    )

    @field_validator("storage_url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if value:
            from vize.storage.s3 import parse_s3_url

            parse_s3_url(value)  # a typo fails at start, not on the first upload
        return value

    @field_validator("worker_metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            from vize.observability.scrape import parse_address

            parse_address(value)  # a typo fails at start, not at the first scrape
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vize.sqlite3').resolve()}"

    @cached_property
    def blob_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").resolve()

    @property
    def onnx_cache_dir(self) -> Path:
        # A property, not cached: a model_copy() with another data_dir must not keep the old one.
        return (self.onnx_dir or self.data_dir / "onnx").resolve()

    @property
    def backbone_list(self) -> list[str]:
        return [b.strip() for b in self.backbone.split(",") if b.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
