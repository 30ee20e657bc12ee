"""Typed settings of the vendor process: the one definition of every setting.

Env vars ``VENDOR_*`` (nested groups with ``__``: ``VENDOR_BATCH__MAX_BATCH``), and the flags of
``vendor-service`` (derived from these classes by pydantic-settings' CLI, see ``cli.py``). Tests
construct the classes directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The env var through which ``serve`` hands its validated settings to the uvicorn worker
#: processes (JSON, without the admin token: workers read that from ``VENDOR_ADMIN_TOKEN``).
SETTINGS_ENV = "VENDOR_SERVE_SETTINGS_JSON"

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class ModelSettings(BaseModel):
    """Which open_clip model to serve, where its files are, and what a query costs."""

    name: str | None = Field(
        None,
        description="open_clip architecture, e.g. ViT-B-32, or vl2v-tiny (built in, random "
        "weights). Unset: `serve` serves the demo world's teacher (its checkpoint, config dir "
        "and card text) when the demo world is installed.",
    )
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. openai) or checkpoint file; unset: random "
        "weights, seeded so that every process serves the same ones.",
    )
    config_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders of open_clip model configs (<architecture>.json) to register, for "
        "architectures open_clip does not ship.",
    )
    description: str | None = Field(
        None,
        description="Text of the model card; unset: one generated from the name and the weights.",
    )
    device: str = Field(
        "cpu", description="torch device to run the model on, e.g. `cpu` or `cuda` (GPU image)."
    )
    price_per_image_query: float = Field(0.0001, ge=0, description="Card price of one image.")
    price_per_text_query: float = Field(0.00002, ge=0, description="Card price of one text.")

    @field_validator("name", "pretrained", "description", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # compose passes `${VAR:-}` as an empty string for "not set"
        return None if value == "" else value


class LimitSettings(BaseModel):
    """Request-size limits, checked before anything is charged."""

    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1, description="Bodies above this size are refused with 413."
    )
    max_items_per_request: int = Field(64, ge=1, description="Most images/texts per request.")
    max_text_chars: int = Field(2000, ge=1, description="Longest single text accepted.")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="width*height above this is refused before decoding."
    )
    # The model's resize scales the short side to its input size, so a 1 x 1,000,000 PNG (4 KB
    # on the wire, 1 Mpx) would become 224 x 224,000,000 pixels: the aspect ratio bounds the
    # size after the resize, which width*height alone does not.
    max_aspect_ratio: float = Field(
        8.0, ge=1, description="Long side / short side above this is refused before decoding."
    )


class BatchSettings(BaseModel):
    """Dynamic batching of the single inference worker."""

    max_batch: int = Field(32, ge=1, description="Most items per model call.")
    # 0: a batch is what queued while the model ran. Measured (benchmarks/bench_vendor.py,
    # 16 one-image clients, demo teacher): waiting 5 ms for fuller batches gave 0.6x the
    # throughput of no batching at all, waiting 0 ms 1.0x; the model is not the bottleneck.
    max_wait_ms: float = Field(
        0.0, ge=0, description="Longest wait for a batch to fill while traffic is concurrent."
    )
    # Test-only knob: sleep this long inside the worker before each batch, so a test can
    # SIGKILL a server while a charged request is deterministically still in flight.
    debug_delay_ms: float = Field(
        0.0, ge=0, description="Tests only: sleep before each batch (keeps charges in flight)."
    )


class RateLimitSettings(BaseModel):
    """Default per-key token bucket (a key may override both)."""

    rps: float = Field(50.0, gt=0, description="Default per-key requests per second.")
    burst: int = Field(100, ge=1, description="Default per-key burst (bucket size).")
    failed_auth_rps: float = Field(
        5.0, gt=0, description="Failed authentications per second per client address."
    )
    failed_auth_burst: int = Field(
        50, ge=1, description="Failed authentications per client address before throttling."
    )
    usage_rps: float = Field(20.0, gt=0, description="GET /v1/usage requests per second per key.")
    usage_burst: int = Field(100, ge=1, description="GET /v1/usage burst per key.")


class HttpSettings(BaseModel):
    """Connection limits: slow, idle or oversized clients cannot hold the server open."""

    header_timeout_s: float = Field(
        10.0, gt=0, description="A request line and its headers must arrive within this (408)."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body must arrive within this of its headers (408)."
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, description="Connections without a request in progress close after this."
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Request line plus headers above this are refused (431)."
    )


class OwnerSettings(BaseModel):
    """How a server process proves it lives, so that only a dead one's charges are refunded."""

    heartbeat_s: float = Field(
        1.0, gt=0, description="Seconds between heartbeats (each also reaps dead owners)."
    )
    lease_s: float = Field(
        10.0,
        gt=0,
        description="An owner on another host silent this long is dead (on this host its pid "
        "tells at once).",
    )


class StoreSettings(BaseSettings):
    """Where the metering database lives (all that ``keys`` and ``usage`` need)."""

    model_config = SettingsConfigDict(env_prefix="VENDOR_", env_nested_delimiter="__")

    data_dir: Path = Field(
        Path("vendor-data"), description="Holds ledger.sqlite3 (and the metrics of workers)."
    )
    database_url: str | None = Field(
        None,
        description="postgresql://user@host:port/db: the ledger in PostgreSQL, shared by "
        "replicas (the password in PGPASSWORD or ~/.pgpass, not here); unset: the SQLite file "
        "in the data dir.",
    )

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def db_path(self) -> Path:
        """The SQLite ledger file."""
        return self.data_dir / "ledger.sqlite3"


class VendorOptions(StoreSettings):
    """Every setting of the vendor process that may also be a flag of ``serve``."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (one model each).")
    log_level: LogLevel = Field("info", description="uvicorn log level.")
    access_log: bool = Field(True, description="Log one line per request.")
    inference_threads: int = Field(1, ge=1, description="torch threads per worker process.")
    model: ModelSettings = ModelSettings()
    limits: LimitSettings = LimitSettings()
    batch: BatchSettings = BatchSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    owners: OwnerSettings = OwnerSettings()
    http: HttpSettings = HttpSettings()


#: Never handed down in the settings JSON: workers read them from their own environment.
_SECRETS = {"admin_token", "metrics_token"}


class VendorSettings(VendorOptions):
    """Everything the vendor process needs: the options plus what is never a flag (a secret
    would show in ``ps``; the instance id is chosen per start)."""

    admin_token: SecretStr | None = Field(
        None, description="Token of the admin API (env VENDOR_ADMIN_TOKEN only)."
    )
    instance_id: str | None = Field(
        None,
        description="Set by `serve` per start: the server its worker processes (the "
        "owners of their in-flight charges) belong to.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token /metrics requires (env VENDOR_METRICS_TOKEN only); unset: "
        "/metrics is open, as Prometheus scrapes it by default.",
    )

    def to_env(self) -> str:
        """These settings as the JSON that :meth:`from_env` reads, without the secrets."""
        return self.model_dump_json(include=set(VendorSettings.model_fields) - _SECRETS)

    @classmethod
    def from_env(cls) -> VendorSettings:
        """The settings ``serve`` handed down (``SETTINGS_ENV``), else from ``VENDOR_*`` vars.

        The secrets always come from ``VENDOR_ADMIN_TOKEN`` and ``VENDOR_METRICS_TOKEN``.
        """
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)
