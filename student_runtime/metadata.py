"""What an exported student carries besides its graph: the one definition of its metadata.

``client-distiller export`` writes it (as JSON under :data:`METADATA_KEY`: an ONNX model's
``metadata_props``, a TorchScript file's extra file) and the runtime reads it back. Everything a
downstream application needs to feed the graph and read its output is here: the class names in
logit order, the input size, the mean and std (applied *inside* the graph: feed images in
[0, 1]), and where the weights came from (teacher fingerprint, weights fingerprint).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

#: The format tag of the metadata (bumped when a field changes meaning).
FORMAT = "vl2v-student-export/1"
#: The key the metadata is stored under (ONNX ``metadata_props``; TorchScript extra file name
#: is ``METADATA_KEY + ".json"``).
METADATA_KEY = "vl2v_student"


@dataclass(frozen=True)
class ModelMetadata:
    """The metadata of an exported student.

    The graph takes ``images``: float32, (batch, 3, input_size, input_size), RGB, values in
    [0, 1] (an 8-bit image divided by 255 after a bilinear resize to ``input_size`` squared);
    it normalizes with ``mean``/``std`` itself and returns ``logits``, (batch, len(classes)).

    Attributes:
        classes: class names (folder names), in logit order.
        input_size: side of the square input in pixels.
        mean, std: per-channel normalization applied inside the graph.
        head: ``"text"`` (frozen class text embeddings x logit scale: ADiP, SD) or
            ``"linear"`` (ERM, KD).
        logit_scale: the teacher's logit scale (text head) or 1.0.
        prompts: prompt templates the class text embeddings were made from.
        teacher_fingerprint: the teacher's weights fingerprint (from its card), if any.
        weights_fingerprint: ``model_io.state_dict_fingerprint`` of the exported student.
        backbone: the architecture spec the checkpoint stores.
        source: where the export came from (checkpoint file name and sha256, its stage and
            algorithm).
        exporter: how it was exported (format, tool, versions, opset).
        quantization: ``None`` (float32) or a description of the quantization.
        input_name, output_name: the graph's input and output names.
        format: :data:`FORMAT`.
    """

    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    head: str
    logit_scale: float
    prompts: list[str] = field(default_factory=list)
    teacher_fingerprint: str | None = None
    weights_fingerprint: str | None = None
    backbone: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)
    quantization: str | None = None
    input_name: str = "images"
    output_name: str = "logits"
    format: str = FORMAT

    def to_json(self) -> str:
        """The metadata as one JSON object (sorted keys)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        """Parse metadata written by :meth:`to_json`.

        Raises:
            ValueError: not JSON, another format, or a required field is missing.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the student metadata is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("the student metadata is not a JSON object")  # noqa: TRY004
        if data.get("format") != FORMAT:
            raise ValueError(
                f"the student metadata has format {data.get('format')!r}; this runtime reads "
                f"{FORMAT!r}"
            )
        known = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        }
        missing = required - set(data)
        if missing:
            raise ValueError(f"the student metadata lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_changes(self, **changes: Any) -> ModelMetadata:
        """A copy with some fields replaced (e.g. ``quantization``)."""
        return ModelMetadata(**{**asdict(self), **changes})
