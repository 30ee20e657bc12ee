"""Reader for DomainBed-style image folders: ``root/<domain>/<class>/<image>``."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from client_distiller.progress import progress_bar
from student_runtime import images as _runtime_images

log = logging.getLogger(__name__)

#: File suffixes read as images; anything else (README, .DS_Store, ...) is ignored silently.
IMAGE_SUFFIXES = _runtime_images.IMAGE_SUFFIXES


class DatasetError(ValueError):
    """The folder is not a usable dataset (missing, empty, inconsistent classes, ...)."""


@dataclass(frozen=True)
class Sample:
    """One image of the dataset.

    Attributes:
        path: absolute file path.
        domain: domain (first-level folder) name.
        label: class index into ``DomainFolder.classes``.
        id: sha256 of (path relative to the root, file bytes): stable across machines and
            roots, and it changes when the file changes.
    """

    path: Path
    domain: str
    label: int
    id: str


@dataclass(frozen=True)
class SkippedFile:
    """A file that looked like an image but could not be read."""

    path: Path
    reason: str


def class_name_to_text(name: str) -> str:
    """Folder name to the words used in prompts (``"hot_air_balloon"`` -> ``"hot air balloon"``)."""
    return name.replace("_", " ").strip()


# One decoder for training, evaluation and the deployed student: the runtime's (numpy and
# Pillow only), so a student sees at deployment exactly the pixels it was trained on.
# ``read_image`` raises ``UnreadableImageError`` (a ValueError) for anything not an image.
to_rgb = _runtime_images.to_rgb
read_image = _runtime_images.read_image


@dataclass
class DomainFolder:
    """A multi-domain image classification dataset on disk.

    Every readable image under ``root/<domain>/<class>/`` is a sample; domains and classes are
    sorted by name; every domain must have the same class folders. Unreadable image files are
    listed in ``skipped`` (and logged at INFO) instead of failing later in a run.

    Args:
        root: dataset folder.
        verify: decode every image while scanning (so a corrupt file is found now, not mid-run).
        progress: show a progress bar while scanning (large folders take a while to verify).
    """

    root: Path
    verify: bool = True
    progress: bool = False
    domains: list[str] = field(init=False)
    classes: list[str] = field(init=False)
    samples: list[Sample] = field(init=False)
    skipped: list[SkippedFile] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        domain_dirs = sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not domain_dirs:
            raise DatasetError(
                f"{self.root} has no domain folders (expected root/<domain>/<class>/<image>)"
            )
        class_sets = {
            d.name: sorted(c.name for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            for d in domain_dirs
        }
        self.domains = [d.name for d in domain_dirs]
        reference = set().union(*map(set, class_sets.values()))
        problems = [
            f"{dom}: missing {sorted(reference - set(cls))}"
            for dom, cls in class_sets.items()
            if set(cls) != reference
        ]
        if problems:
            raise DatasetError("class folders differ across domains: " + "; ".join(problems))
        self.classes = sorted(reference)
        if not self.classes:
            raise DatasetError(f"{self.root}: domains have no class folders")
        self.samples, self.skipped = [], []
        files = [
            (path, dom.name, label)
            for dom in domain_dirs
            for label, cls in enumerate(self.classes)
            for path in sorted((dom / cls).rglob("*"))
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        ]
        for path, domain, label in progress_bar(
            files, desc="scan dataset", unit="img", leave=False, enabled=self.progress
        ):
            self._add(path, domain, label)
        # Logged, not warned: the caller decides how to tell a person (the CLI prints each
        # skipped file once, with a count), so they are not reported twice.
        for s in self.skipped:
            log.info("skipping unreadable image %s: %s", s.path, s.reason)
        if not self.samples:
            raise DatasetError(f"{self.root}: no readable images")

    def _add(self, path: Path, domain: str, label: int) -> None:
        try:
            data = path.read_bytes()
            if self.verify:
                read_image(path)
        except _runtime_images.UnreadableImageError as exc:
            self.skipped.append(SkippedFile(path, exc.reason))
            return
        except OSError as exc:  # the file itself cannot be read
            self.skipped.append(SkippedFile(path, f"{type(exc).__name__}: {exc}"))
            return
        rel = path.relative_to(self.root).as_posix().encode("utf-8")
        digest = hashlib.sha256(len(rel).to_bytes(8, "little") + rel + data).hexdigest()
        self.samples.append(Sample(path=path, domain=domain, label=label, id=digest))

    def domain_samples(self, domain: str) -> list[Sample]:
        """Samples of one domain, in scan order."""
        self.check_domain(domain)
        return [s for s in self.samples if s.domain == domain]

    def check_domain(self, domain: str) -> None:
        """Raise ``DatasetError`` naming the known domains if ``domain`` is not one of them."""
        if domain not in self.domains:
            raise DatasetError(f"unknown domain {domain!r}; this dataset has {self.domains}")

    @property
    def class_texts(self) -> list[str]:
        """Class names as words (``_`` -> space), in label order."""
        return [class_name_to_text(c) for c in self.classes]

    def __len__(self) -> int:
        return len(self.samples)


def load_image(sample: Sample) -> Image.Image:
    """The sample's image as RGB."""
    return read_image(sample.path)
