"""Load the configured open_clip model for serving (through ``model_io``'s one loader)."""

from __future__ import annotations

from model_io import ModelLoadError, OpenClipModel, check_loadable, load_open_clip
from vendor_service.settings import ModelSettings

#: The served model: the open_clip module, its preprocessing and tokenizer, and its card facts.
LoadedModel = OpenClipModel


class ModelUnavailable(ModelLoadError):
    """The configured model cannot be served (no name, unknown architecture, missing file)."""


def _name(settings: ModelSettings) -> str:
    if settings.name is None:
        raise ModelUnavailable(
            "no model named: set model.name (`vendor-service serve` defaults to the demo teacher)"
        )
    return settings.name


def check_model_available(settings: ModelSettings) -> None:
    """Fail fast (before workers start) on an unknown architecture or a missing weights file."""
    try:
        check_loadable(
            _name(settings), pretrained=settings.pretrained, config_dirs=settings.config_dirs
        )
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc


def load_model(settings: ModelSettings) -> LoadedModel:
    """The model ``settings`` describe, frozen in eval mode (see ``model_io.load_open_clip``)."""
    try:
        return load_open_clip(
            _name(settings),
            pretrained=settings.pretrained,
            config_dirs=settings.config_dirs,
            device=settings.device,
        )
    except ModelUnavailable:
        raise
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
