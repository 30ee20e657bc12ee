"""Load the configured open_clip model for serving (through ``model_io``'s one loader)."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from model_io import ModelLoadError, OpenClipModel, check_loadable, load_open_clip
from vendor_service.settings import ModelSettings

#: The served model: the open_clip module, its preprocessing and tokenizer, and its card facts.
LoadedModel = OpenClipModel

#: Most BPE results the tokenizer keeps (open_clip's own cache never forgets: every distinct
#: word of every request stayed, 287 MB from refused requests alone in the issue's run).
TOKENIZER_CACHE_ENTRIES = 20_000


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


def ensure_model_weights(settings: ModelSettings) -> None:
    """Pretrained weights (a tag such as ``openai``) in the local cache before workers start:
    fetched here, once, when missing, so that the workers do not each try the network (and
    an offline start fails with one line instead of every worker's retries and tracebacks)."""
    if settings.pretrained is not None:
        ensure_pretrained_weights(_name(settings), settings.pretrained)


def ensure_pretrained_weights(name: str, tag: str) -> None:
    """Make sure open_clip's pretrained weights ``tag`` of ``name`` are in the local cache.

    Nothing to do for a checkpoint path or a tag open_clip does not know (the loader reports
    those). Otherwise the cache is tried first without network, then the download host is
    probed (a second at most), and only then the weights are downloaded.

    Raises:
        ModelUnavailable: one line naming the cause and what to do (the download's own retries
            and tracebacks are not shown).
    """
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(name, tag)
    if not cfg:
        return
    with contextlib.suppress(Exception), _hub_offline():
        if download_pretrained(cfg):
            return
    url = _download_url(cfg)
    host = urlparse(url).netloc or "the download host"
    fix = (
        "download them once where the network is reachable (open_clip caches them under "
        "~/.cache/huggingface), or pass --model.pretrained /path/to/weights.pt"
    )
    if not _reachable(url):
        raise ModelUnavailable(
            f"the {tag!r} weights of {name} are not in the local cache and {host} cannot be "
            f"reached (offline?): {fix}"
        )
    try:
        path = download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 -- hub, HTTP and file errors: one line for the user
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelUnavailable(
            f"could not download the {tag!r} weights of {name} from {host} "
            f"({type(exc).__name__}: {first}): {fix}"
        ) from None
    if not path:
        raise ModelUnavailable(f"open_clip found no file for the {tag!r} weights of {name}")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub in offline mode (cache only, no retries against a dead network)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _download_url(cfg: dict[str, Any]) -> str:
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import constants

            return str(constants.ENDPOINT)
        except ImportError:
            pass
    return str(cfg.get("url", ""))


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of ``url`` resolves and accepts a TCP connection within ``timeout``."""
    import socket

    parsed = urlparse(url)
    if not parsed.hostname:
        return False
    address = (parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443))
    ok: list[bool] = []

    def probe() -> None:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=timeout):
            ok.append(True)

    # A thread bounds name resolution too (getaddrinfo takes no timeout).
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(ok)


def load_model(settings: ModelSettings) -> LoadedModel:
    """The model ``settings`` describe, frozen in eval mode (see ``model_io.load_open_clip``),
    with a bounded tokenizer cache."""
    try:
        loaded = load_open_clip(
            _name(settings),
            pretrained=settings.pretrained,
            config_dirs=settings.config_dirs,
            device=settings.device,
        )
    except ModelUnavailable:
        raise
    except ModelLoadError as exc:
        raise ModelUnavailable(str(exc)) from exc
    bound_tokenizer_cache(loaded.tokenizer)
    return loaded


class BoundedCache(dict[Any, Any]):
    """A dict for a tokenizer's word cache that forgets its oldest entries beyond ``limit``.

    Entries present at construction (the special tokens) are never forgotten. Reads are plain
    dict reads (the tokenizer runs in several threads; a forgotten word is only recomputed).
    """

    def __init__(self, initial: dict[Any, Any], limit: int) -> None:
        super().__init__(initial)
        self.limit = limit
        self._order: deque[Any] = deque()
        self._lock = threading.Lock()

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            if key not in self:
                self._order.append(key)
                while len(self._order) > self.limit:
                    super().pop(self._order.popleft(), None)
            super().__setitem__(key, value)


def bound_tokenizer_cache(tokenizer: Any, limit: int = TOKENIZER_CACHE_ENTRIES) -> None:
    """Replace open_clip's unbounded BPE cache (``SimpleTokenizer.cache``) by a bounded one.

    Tokenizers without such a cache (Hugging Face ones) are left as they are.
    """
    cache = getattr(tokenizer, "cache", None)
    if isinstance(cache, dict) and not isinstance(cache, BoundedCache):
        tokenizer.cache = BoundedCache(cache, limit)
