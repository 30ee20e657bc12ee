"""The metadata schema and the top-k ranking of the runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from student_runtime import FORMAT, ModelMetadata, Prediction, rank, softmax


def _metadata() -> ModelMetadata:
    return ModelMetadata(
        classes=["cat", "dog", "hot_air_balloon"],
        input_size=64,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        head="text",
        logit_scale=20.0,
        prompts=["a photo of a {}"],
        teacher_fingerprint="ab" * 32,
    )


def test_metadata_round_trips_through_json() -> None:
    meta = _metadata()
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert json.loads(meta.to_json())["format"] == FORMAT
    assert meta.with_changes(quantization="int8").quantization == "int8"
    # Unknown keys from a later writer are ignored, not fatal.
    data = {**json.loads(meta.to_json()), "later_field": 1}
    assert ModelMetadata.from_json(json.dumps(data)) == meta


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"format": "other/1"}), "format 'other/1'"),
        (json.dumps({"format": FORMAT, "classes": ["a"]}), "lacks head, input_size"),
    ],
)
def test_bad_metadata_is_a_clear_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelMetadata.from_json(text)


def test_rank_orders_classes_by_probability() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    top = rank(logits, ["a", "b", "c"], top_k=2, paths=["x.png", None])
    assert [p.labels for p in top] == [("b", "c"), ("c", "a")]
    expected = softmax(logits)
    assert top[0].probabilities == pytest.approx((expected[0, 1], expected[0, 2]))
    assert np.allclose(expected.sum(1), 1.0)
    assert top[0].label == "b" and top[0].path == "x.png" and top[1].path is None
    assert len(rank(logits, ["a", "b", "c"], top_k=10)[0].labels) == 3  # capped at C
    assert len(rank(logits, ["a", "b", "c"], top_k=0)[0].labels) == 1


def test_softmax_is_stable_for_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 999.0, -1000.0]]))
    assert np.isfinite(probs).all() and probs[0, 0] > probs[0, 1] > probs[0, 2]


def test_prediction_lines() -> None:
    p = Prediction(labels=("cat", "dog"), probabilities=(0.75, 0.2), path="a b.png")
    assert p.text_line() == "a b.png\tcat 0.750, dog 0.200"
    assert json.loads(p.json_line()) == {
        "path": "a b.png",
        "labels": ["cat", "dog"],
        "probabilities": [0.75, 0.2],
    }
