"""The wire contract between the vendor service and its clients.

Pydantic v2 models only, grouped by direction of traffic: ``...Request`` is what a client sends,
``...Response`` what the vendor answers, ``...Public`` a resource as the outside world sees it.
Nothing from storage lives here.
"""

from shared_schemas.embeddings import (
    EmbeddingItem,
    EmbeddingResponse,
    EncodingFormat,
    ImageEmbeddingRequest,
    TextEmbeddingRequest,
    decode_embedding,
    encode_embedding,
)
from shared_schemas.endpoints import IMAGES, TEXTS, EmbeddingEndpoint
from shared_schemas.errors import ErrorBody, ErrorResponse
from shared_schemas.keys import (
    KeyCreateRequest,
    KeyCreateResponse,
    KeyListResponse,
    KeyPublic,
    KeyTopUpRequest,
)
from shared_schemas.models import ModelCard, ModelListResponse
from shared_schemas.openai import (
    Modality,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
)
from shared_schemas.usage import (
    BudgetPublic,
    LedgerEntryPublic,
    LedgerStatus,
    QueryUsage,
    UsageResponse,
)

__all__ = [
    "IMAGES",
    "TEXTS",
    "BudgetPublic",
    "EmbeddingEndpoint",
    "EmbeddingItem",
    "EmbeddingResponse",
    "EncodingFormat",
    "ErrorBody",
    "ErrorResponse",
    "ImageEmbeddingRequest",
    "KeyCreateRequest",
    "KeyCreateResponse",
    "KeyListResponse",
    "KeyPublic",
    "KeyTopUpRequest",
    "LedgerEntryPublic",
    "LedgerStatus",
    "Modality",
    "ModelCard",
    "ModelListResponse",
    "OpenAIEmbedding",
    "OpenAIEmbeddingRequest",
    "OpenAIEmbeddingResponse",
    "OpenAIUsage",
    "QueryUsage",
    "TextEmbeddingRequest",
    "UsageResponse",
    "decode_embedding",
    "encode_embedding",
]
