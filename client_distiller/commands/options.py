"""The options of ``client-distiller``, each declared once.

Every command is a pydantic-settings model built from the option groups below, so an option
that several commands share (``--views``, ``--prompts``, ``--data``, the teacher's options...)
has one type, one default and one help text everywhere. Flags (kebab-case) and environment
variables (``VL2V_<NAME>``, e.g. ``VL2V_ENDPOINT``, ``VL2V_API_KEY``, ``VL2V_CACHE_DIR``,
``VL2V_DATA_DIR``) are derived from the same fields by pydantic-settings; a flag wins over its
environment variable. Validation is field validators: a bad value is one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from typing_extensions import Self

from client_distiller.commands import demo
from client_distiller.plan import DEFAULT_PROMPTS
from client_distiller.results import ONLINE, ViewSetting
from client_distiller.teacher import NATIVE, Api, CardFacts, TeacherConfigError, check_endpoint


class Verbatim:
    """Marks a list option whose values are taken as typed, never split at commas (prompts and
    file names may contain commas and quotes).

    Attributes:
        several: the option takes several values after one flag (``--prompts A B C``), as an
            argparse ``nargs="+"`` option would; ``client_distiller.cli`` expands that to
            repeated flags before parsing.
    """

    def __init__(self, *, several: bool) -> None:
        self.several = several


#: A positional list taken as typed (predict's image files).
VERBATIM = Verbatim(several=False)
#: A list option taking several values after one flag, as typed.
SEVERAL = Verbatim(several=True)

#: The configuration every command model shares.
COMMAND_CONFIG = SettingsConfigDict(
    env_prefix="VL2V_",
    env_ignore_empty=True,  # compose passes unset variables as empty strings
    cli_kebab_case=True,
    cli_implicit_flags="toggle",  # a bool defaulting to True is --no-x, one defaulting to False --x
    cli_hide_none_type=True,
    cli_avoid_json=True,
    cli_enforce_required=True,
)


class Options(BaseSettings):
    """Base of every command's options."""

    model_config = COMMAND_CONFIG


def default_cache_dir() -> Path:
    """``~/.cache/vl2v``."""
    return Path.home() / ".cache" / "vl2v"


class CacheOptions(Options):
    """Where the teacher's answers and the spend ledger live."""

    cache_dir: Path = Field(
        default_cache_dir(), description="teacher cache and budget ledger (env VL2V_CACHE_DIR)"
    )


class ClipConfigOptions(Options):
    """Where open_clip architectures are defined."""

    clip_config_dirs: Annotated[list[Path], SEVERAL] = Field(
        demo.clip_config_dirs(),
        description="folders of open_clip model configs (<name>.json) for --local-teacher and "
        "for white-box (sd) students, besides open_clip's own and the built-in vl2v-tiny "
        "(the default is the demo world's: vl2v-demo-v3, vl2v-demo)",
    )


class CardOptions(Options):
    """What an OpenAI-compatible server does not state about its model (``--api openai``)."""

    card: Path | None = Field(
        None,
        description="JSON file of the teacher's card facts for --api openai: image_size, "
        "embed_dim, logit_scale, fingerprint, image_mean, image_std, max_items_per_request, "
        "price_per_image_query, price_per_text_query (the --card-* flags override it)",
    )
    card_image_size: int | None = Field(
        None, ge=1, description="the teacher's input size in pixels (--api openai)"
    )
    card_embed_dim: int | None = Field(
        None, ge=1, description="the teacher's embedding width (--api openai)"
    )
    card_logit_scale: float | None = Field(
        None, gt=0, description="the teacher's logit scale, e.g. 100 (--api openai)"
    )
    card_fingerprint: str | None = Field(
        None,
        description="sha256 of the teacher's weights (--api openai); without it the cache keys "
        "answers on endpoint + model id",
    )
    card_image_mean: list[float] | None = Field(
        None, description="the teacher's normalization mean, 3 values (--api openai)"
    )
    card_image_std: list[float] | None = Field(
        None, description="the teacher's normalization std, 3 values (--api openai)"
    )

    def card_facts(self) -> CardFacts:
        """The card file's facts with the flags on top (raises ``CardError`` on a bad file)."""
        facts = CardFacts.from_file(self.card) if self.card is not None else CardFacts()
        flags = CardFacts(
            image_size=self.card_image_size,
            embed_dim=self.card_embed_dim,
            logit_scale=self.card_logit_scale,
            fingerprint=self.card_fingerprint,
            image_mean=self.card_image_mean,
            image_std=self.card_image_std,
        )
        return facts.merged(flags)

    def _card_given(self) -> bool:
        return self.card is not None or any(
            getattr(self, name) is not None
            for name in type(self).model_fields
            if name[:5] == "card_"
        )


class TeacherOptions(CacheOptions, ClipConfigOptions, CardOptions):
    """Where the teacher is: the vendor (endpoint + key) or a local white-box model."""

    endpoint: str | None = Field(
        None,
        description="vendor base URL, e.g. http://127.0.0.1:8000; with --api openai the OpenAI "
        "base URL, e.g. http://127.0.0.1:8000/v1 (env VL2V_ENDPOINT)",
    )
    api: Api = Field(
        NATIVE,
        description="the vendor's API: 'native' (this project's) or 'openai' (any "
        "OpenAI-compatible embeddings server, e.g. Infinity; card facts from --card / "
        "--card-*) (env VL2V_API)",
    )
    model: str | None = Field(
        None, description="the teacher's model id at the vendor (default: the first it lists)"
    )
    api_key: SecretStr | None = Field(None, description="vendor API key (env VL2V_API_KEY)")
    local_teacher: str | None = Field(
        None,
        description="use this open_clip model in process instead of the vendor (white-box)",
    )
    local_pretrained: str | None = Field(
        None, description="pretrained tag or checkpoint for --local-teacher"
    )
    concurrency: int = Field(4, ge=1, description="requests in flight")

    @model_validator(mode="after")
    def _endpoint_is_a_base_url(self) -> Self:
        # A malformed endpoint is a configuration mistake: one line now, not 18 s of retries.
        if self.endpoint:
            try:
                self.endpoint = check_endpoint(self.endpoint, self.api)
            except TeacherConfigError as exc:
                raise ValueError(str(exc)) from None
        if self._card_given() and self.api == NATIVE:
            raise ValueError(
                "--card and --card-* are for --api openai: the native API states the card"
            )
        return self


class CapOptions(Options):
    """The client's own cap on what one run may send."""

    max_queries: int | None = Field(
        None,
        ge=0,
        description="hard cap on queries this run may send (checked before each request)",
    )


class DatasetOptions(Options):
    """Which dataset."""

    data: str = Field(
        demo.DEMO,
        description="dataset folder root/<domain>/<class>/<image>, or 'demo' (the generated "
        "demo benchmark)",
    )
    data_dir: Path = Field(
        Path.home() / ".cache" / "vl2v" / "data",
        description="where --data demo is generated (env VL2V_DATA_DIR)",
    )

    @field_validator("data")
    @classmethod
    def _folder_exists(cls, value: str) -> str:
        if value != demo.DEMO and not Path(value).is_dir():
            raise ValueError(f"no such folder: {value}")
        return value


class SplitOptions(DatasetOptions):
    """The dataset and its leave-one-domain-out split."""

    target_domain: str | None = Field(None, description="held-out (test) domain")
    holdout_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="out-split fraction of each domain"
    )
    split_seed: int = Field(0, description="seed of the in/out split")


class PlanOptions(Options):
    """The teacher queries of a run: views per image and prompt templates."""

    views: list[ViewSetting] = Field(
        [4],
        description="teacher views per training image: K, or a comma list (1,2,4,8) and/or "
        "'online' (a fresh paid view every step; run only)",
    )
    view_seed: int = Field(0, description="seed of the view bank")
    prompts: Annotated[list[str], SEVERAL] = Field(
        list(DEFAULT_PROMPTS),
        description="prompt templates, each with one {} for the class (several: --prompts A B)",
    )

    @field_validator("views", mode="before")
    @classmethod
    def _view_settings(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        out: list[ViewSetting] = []
        for item in items:
            text = str(item).strip()
            if text == ONLINE:
                out.append(ONLINE)
            elif text.isdigit() and int(text) >= 1:
                out.append(int(text))
            else:
                raise ValueError(f"{text!r} is neither a count >= 1 nor 'online'")
        if not out:
            raise ValueError("give at least one view setting")
        return out

    @field_validator("prompts")
    @classmethod
    def _one_placeholder(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("need at least one prompt template")
        for p in value:
            if p.count("{}") != 1:
                raise ValueError(f"prompt {p!r} must contain exactly one '{{}}' for the class name")
        return value


class ZeroshotOptions(Options):
    """Whether the plan embeds the evaluation images."""

    zeroshot: bool = Field(
        True,
        description="embed the evaluation images, for the teacher's zero-shot reference "
        "(--no-zeroshot skips them)",
    )


class ProgressOptions(Options):
    """Progress bars."""

    progress: bool = Field(True, description="show progress bars (--no-progress: none)")


class CheckpointOptions(ClipConfigOptions):
    """A trained student."""

    checkpoint: Path = Field(description="student checkpoint written by `client-distiller run`")


def verbatim(metadata: list[Any]) -> Verbatim | None:
    """The ``Verbatim`` marker in a field's metadata, if any."""
    return next((m for m in metadata if isinstance(m, Verbatim)), None)
