"""Model files in and out, shared by the vendor, the client and the demo world: the weights
fingerprint, and atomic checkpoint writes. Imports torch lazily (``shared_schemas`` stays
pydantic-only)."""

from model_io.files import atomic_save
from model_io.fingerprint import state_dict_fingerprint

__all__ = ["atomic_save", "state_dict_fingerprint"]
