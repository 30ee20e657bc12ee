"""The names of the embedding endpoints: the one definition, used by both sides."""

from __future__ import annotations

from typing import Literal

#: What a query embeds: the name of the native route (``/v1/embeddings/<endpoint>``) and of the
#: endpoint column in ledgers, caches and usage reports.
EmbeddingEndpoint = Literal["images", "texts"]
IMAGES: EmbeddingEndpoint = "images"
TEXTS: EmbeddingEndpoint = "texts"
