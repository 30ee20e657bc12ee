"""``GET /v1/models``: the model card."""

from __future__ import annotations

from fastapi import APIRouter

from shared_schemas import ModelCard, ModelListResponse
from vendor_service.deps import ModelDep, SettingsDep
from vendor_service.inference.loading import LoadedModel
from vendor_service.settings import VendorSettings

router = APIRouter(prefix="/v1", tags=["models"])


def _description(model: LoadedModel, settings: VendorSettings) -> str:
    if settings.model.description:
        return settings.model.description
    if not model.trained:
        return f"{model.name}: random weights (untrained), for tests only"
    return f"{model.name} ({model.pretrained}) served by vendor-service"


def model_card(model: LoadedModel, settings: VendorSettings) -> ModelCard:
    """The public description of the served model: its facts, text, prices and limits.

    The facts come from ``model_io`` (the same as a local copy of the model states); the
    description, the prices and the request limits are the vendor's own.
    """
    return model.card(
        description=_description(model, settings),
        price_per_image_query=settings.model.price_per_image_query,
        price_per_text_query=settings.model.price_per_text_query,
        max_items_per_request=settings.limits.max_items_per_request,
        max_request_bytes=settings.limits.max_request_bytes,
    )


@router.get("/models", response_model=ModelListResponse)
def list_models(model: ModelDep, settings: SettingsDep) -> ModelListResponse:
    """The served model's card: id, fingerprint, sizes, normalization, prices, limits."""
    return ModelListResponse(data=[model_card(model, settings)])
