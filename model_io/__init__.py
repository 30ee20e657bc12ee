"""Model files in and out, shared by the vendor, the client and the demo world: the weights
fingerprint, atomic checkpoint writes, and the one open_clip loading prologue with the model
facts a card states. Imports torch and open_clip lazily (``import model_io`` stays cheap)."""

from model_io.clip import (
    BUILTIN_CONFIG_DIR,
    TINY_MODEL,
    ModelFacts,
    ModelLoadError,
    OpenClipModel,
    check_loadable,
    load_open_clip,
    register_model_configs,
)
from model_io.files import atomic_save
from model_io.fingerprint import state_dict_fingerprint

__all__ = [
    "BUILTIN_CONFIG_DIR",
    "TINY_MODEL",
    "ModelFacts",
    "ModelLoadError",
    "OpenClipModel",
    "atomic_save",
    "check_loadable",
    "load_open_clip",
    "register_model_configs",
    "state_dict_fingerprint",
]
