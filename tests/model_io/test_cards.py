"""One model card: the vendor's served card and the local teacher's agree on every model fact."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fastapi.testclient import TestClient

from model_io import TINY_MODEL, ModelFacts, load_open_clip
from shared_schemas import ModelCard, ModelListResponse

#: Card fields that describe the weights: computed once, in model_io, for both sides.
FACTS = {
    "id",
    "pretrained",
    "trained",
    "fingerprint",
    "embed_dim",
    "image_size",
    "image_mean",
    "image_std",
    "context_length",
    "logit_scale",
}
#: What the server decides (the local teacher states its own: free, its batch size).
VENDOR_ONLY = {
    "description",
    "price_per_image_query",
    "price_per_text_query",
    "currency",
    "max_items_per_request",
    "max_request_bytes",
}


def test_every_card_field_is_either_a_fact_or_the_vendors_own():
    assert set(ModelCard.model_fields) == FACTS | VENDOR_ONLY
    facts = {f.name for f in dataclasses.fields(ModelFacts)}
    assert facts == (FACTS - {"id"}) | {"name"}


def _served_card(tmp_path, **model: str) -> ModelCard:
    from vendor_service.app import create_app
    from vendor_service.settings import VendorSettings

    settings = VendorSettings(data_dir=tmp_path / "data", admin_token="t", model=model)
    with TestClient(create_app(settings)) as client:  # the lifespan loads the model itself
        body = client.get("/v1/models").json()
    return ModelListResponse.model_validate(body).data[0]


@pytest.mark.parametrize("weights", ["random", "checkpoint"])
def test_vendor_card_equals_local_teacher_card(tmp_path, weights):
    from client_distiller.teacher.local import LocalTeacher

    pretrained = None
    if weights == "checkpoint":
        pretrained = str(tmp_path / "tiny.pt")
        torch.save(load_open_clip(TINY_MODEL).model.state_dict(), pretrained)
    model = {"name": TINY_MODEL} | ({"pretrained": pretrained} if pretrained else {})
    served = _served_card(tmp_path, **model)
    local = LocalTeacher(model=TINY_MODEL, pretrained=pretrained).card
    assert served.model_dump(include=FACTS) == local.model_dump(include=FACTS)
    assert served.trained is (weights == "checkpoint")
    assert served.pretrained == (None if pretrained is None else "tiny.pt")
    # the vendor-only fields are really the vendor's: here they differ
    assert served.description != local.description
    assert served.price_per_image_query > 0
    assert local.price_per_image_query == 0
