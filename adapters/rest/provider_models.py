"""REST wire shapes of providers (zndraw-joblib 0.1.7 field names).

`content_type` on `ProviderResponse` is an extension: 0.1.7 clients ignore fields they
do not know. `check_register_lengths` bounds the free-text fields of a registration by
the host's limits (problem+json `value-too-long`, like the boundary's other refusals).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from workerledger.core import ProviderState

from ..input_limits import InputLimits, check_length
from .models import UtcDatetime


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ProviderRegisterRequest(_Wire):
    """A provider registration (0.1.7's body); unknown fields are refused (422)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    category: str = Field(
        pattern=r"^[^:\n]+$",
        description="no `:` (a provider is addressed as room:category:name), one line",
    )
    name: str = Field(
        min_length=1,
        pattern=r"^[^\n]+$",
        description="one line: a provider is addressed by its full name in URL paths",
    )
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    content_type: str = Field(
        default="application/json",
        min_length=1,
        description="the media type the provider's results are served with",
    )
    worker_id: uuid.UUID | None = None


class ProviderResponse(_Wire):
    id: str
    room_id: str
    category: str
    name: str
    full_name: str
    schema_: dict[str, Any] = Field(alias="schema")
    worker_id: str
    created_at: UtcDatetime
    content_type: str


def check_register_lengths(body: ProviderRegisterRequest, limits: InputLimits) -> None:
    """Refuse a category, name or content type over the host's limits (InputRefused).

    A provider is addressed like a job (`room:category:name`), so the job limits apply;
    a media type is a client-chosen identifier (`max_key_length`; RFC 6838 allows 127
    characters on each side of the `/`).
    """
    check_length("category", body.category, limits.max_category_length)
    check_length("name", body.name, limits.max_job_name_length)
    check_length("content_type", body.content_type, limits.max_key_length)


def provider_response(provider: ProviderState) -> ProviderResponse:
    return ProviderResponse(
        id=provider.id,
        room_id=provider.room_id,
        category=provider.category,
        name=provider.name,
        full_name=provider.full_name,
        schema_=provider.schema_,
        worker_id=provider.worker_id,
        created_at=provider.created_at,
        content_type=provider.content_type,
    )
