"""The wire contract: endpoint names, embedding encodings, request and ledger validation."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from shared_schemas import (
    IMAGES,
    TEXTS,
    EmbeddingEndpoint,
    ImageEmbeddingRequest,
    LedgerEntryPublic,
    TextEmbeddingRequest,
    decode_embedding,
    encode_embedding,
)


def test_one_definition_of_the_endpoint_names():
    assert get_args(EmbeddingEndpoint) == (IMAGES, TEXTS) == ("images", "texts")


def test_embeddings_round_trip_as_floats_and_little_endian_base64():
    v = np.array([0.5, -1.25, 3.0e-8], dtype=np.float32)
    as_b64 = encode_embedding(v, "base64")
    assert base64.b64decode(as_b64) == v.astype("<f4").tobytes()
    assert np.array_equal(decode_embedding(as_b64), v)
    floats = encode_embedding(v, "float")
    assert isinstance(floats, list) and np.array_equal(decode_embedding(floats), v)
    assert decode_embedding(as_b64).dtype == np.float32


def test_requests_refuse_unknown_fields_and_formats():
    assert TextEmbeddingRequest(texts=["a"]).normalize is True
    with pytest.raises(ValidationError):
        TextEmbeddingRequest(texts=["a"], extra=1)
    with pytest.raises(ValidationError):
        ImageEmbeddingRequest(images=[], encoding_format="hex")


def test_ledger_entries_name_a_real_endpoint_and_status():
    row = {
        "request_id": "req_1",
        "created_at": datetime.now(timezone.utc),
        "endpoint": TEXTS,
        "queries": 2,
        "status": "charged",
    }
    assert LedgerEntryPublic(**row).endpoint == "texts"
    for bad in ({"endpoint": "videos"}, {"status": "pending"}, {"queries": -1}):
        with pytest.raises(ValidationError):
            LedgerEntryPublic(**{**row, **bad})
