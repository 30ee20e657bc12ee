"""The weights fingerprint: what a model card's ``fingerprint`` is, on every side.

The vendor puts it on its card, the client keys its cache on it and a local copy of the
vendor's weights must reproduce it, so there is exactly one definition.
"""

from __future__ import annotations

import hashlib
from typing import Any


def state_dict_fingerprint(model: Any) -> str:
    """sha256 over ``model.state_dict()`` in sorted key order: name, dtype, shape, raw bytes.

    Covers every parameter and buffer (so a fine-tuned copy or another precision differs);
    not the architecture's code or the preprocessing.
    """
    import torch

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        # Reinterpreted as bytes so every dtype (bfloat16 included) hashes the same way.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
