"""Typed settings of the vendor process (env prefix ``VENDOR_``, nested groups with ``__``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseModel):
    """Which open_clip model to serve and what a query costs."""

    name: str = Field("vl2v-demo-v3", description="open_clip architecture name.")
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag or checkpoint path; None = the demo teacher's "
        "shipped checkpoint for the default model, random weights otherwise.",
    )
    device: str = Field(
        "cpu", description="torch device to run the model on, e.g. `cpu` or `cuda` (GPU image)."
    )
    price_per_image_query: float = 0.0001
    price_per_text_query: float = 0.00002


class LimitSettings(BaseModel):
    """Request-size limits, checked before anything is charged."""

    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1)
    max_items_per_request: int = Field(64, ge=1)
    max_text_chars: int = Field(2000, ge=1, description="Longest single text accepted.")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="width*height above this is refused before decoding."
    )


class BatchSettings(BaseModel):
    """Dynamic batching of the single inference worker."""

    max_batch: int = Field(32, ge=1)
    # 0: a batch is what queued while the model ran. Measured (benchmarks/bench_vendor.py,
    # 16 one-image clients, demo teacher): waiting 5 ms for fuller batches gave 0.6x the
    # throughput of no batching at all, waiting 0 ms 1.0x; the model is not the bottleneck.
    max_wait_ms: float = Field(0.0, ge=0)
    # Test-only knob: sleep this long inside the worker before each batch, so a test can
    # SIGKILL a server while a charged request is deterministically still in flight.
    debug_delay_ms: float = Field(0.0, ge=0)


class RateLimitSettings(BaseModel):
    """Default per-key token bucket (a key may override both)."""

    rps: float = Field(50.0, gt=0)
    burst: int = Field(100, ge=1)


class VendorSettings(BaseSettings):
    """Everything the vendor process needs; env vars ``VENDOR_*`` (``VENDOR_BATCH__MAX_BATCH``)."""

    model_config = SettingsConfigDict(env_prefix="VENDOR_", env_nested_delimiter="__")

    data_dir: Path = Field(Path("vendor-data"), description="Holds ledger.sqlite3 and metrics.")
    admin_token: SecretStr | None = None
    instance_id: str | None = Field(
        None, description="Set by `serve` per start; in-flight charges of other ids are stale."
    )
    model: ModelSettings = ModelSettings()
    limits: LimitSettings = LimitSettings()
    batch: BatchSettings = BatchSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    inference_threads: int = Field(1, ge=1, description="torch threads per worker process.")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"
