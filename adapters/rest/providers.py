"""Provider routes (zndraw-joblib 0.1.7): register, list, info, read with long-poll,
result upload, delete. `/info` stays before the read, whose path takes the rest.

A provider is visible from its own room and, if it is in `@global`, from every room;
a name that is malformed, unknown or not visible answers 404 `provider-not-found`.
Reads and results go through `providers.reads.ProviderReads` (the result cache).
"""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from workerledger.core import (
    GLOBAL_ROOM,
    Actor,
    ForbiddenError,
    ProviderNotFoundError,
    ProviderState,
    RegisterProvider,
    RemoveProvider,
    job_full_name,
    split_job_name,
)

from ..input_limits import body_too_large
from ..projection import Projection
from ..providers.reads import ProviderReads, ProviderTimeoutError
from .context import RestContext
from .idempotency import IdempotencyKey, idempotent_id, keyed_provider_id
from .jobs import check_room, check_writable
from .models import Limit, Offset, Paginated, page
from .problems import problem_response, problem_responses
from .provider_models import (
    ProviderRegisterRequest,
    ProviderResponse,
    check_register_lengths,
    provider_response,
)
from .tasks import prefer_wait

_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the provider's result, served with the provider's content type",
        "content": {"*/*": {}},
    },
    504: {
        **problem_responses(504)[504],
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": True}},
    },
}

_RESULT_BODY: dict[str, Any] = {
    "description": "the result, stored as sent and served with the provider's content type",
    "required": False,
    "content": {
        "application/json": {"schema": {}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


def resolve_provider(view: Projection, room_id: str, provider_name: str) -> ProviderState:
    """The live provider of that full name visible from `room_id`; ProviderNotFoundError."""
    parts = split_job_name(provider_name)
    if parts is None:
        raise ProviderNotFoundError(f"Invalid provider name format: {provider_name}")
    if parts[0] not in (room_id, GLOBAL_ROOM):
        raise ProviderNotFoundError(
            f"Provider '{provider_name}' not accessible from room '{room_id}'"
        )
    provider = view.provider(provider_name)
    if provider is None:
        raise ProviderNotFoundError(f"Provider '{provider_name}' not found")
    return provider


def provider_by_id(view: Projection, provider_id: str) -> ProviderState:
    provider = view.provider_by_id(provider_id)
    if provider is None:
        raise ProviderNotFoundError(f"Provider '{provider_id}' not found")
    return provider


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) once it passes `limit` bytes, chunked or not."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def provider_routes(ctx: RestContext) -> APIRouter:
    router = APIRouter(
        route_class=ctx.route_class,
        tags=["providers"],
        responses=problem_responses(400, 404),
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]
    ProviderName = Annotated[
        str,
        Path(
            min_length=1,
            max_length=ctx.limits.max_full_job_name_length,
            description="the provider's full name, `room:category:name`",
        ),
    ]
    RequestHash = Annotated[
        str,
        Header(
            min_length=1,
            max_length=ctx.limits.max_key_length,
            description="the request hash of the read this body answers (`request_id`)",
        ),
    ]
    settings = ctx.providers
    reads = ProviderReads(
        settings.results,
        ctx.ledger,
        result_ttl_seconds=settings.result_ttl_seconds,
        inflight_ttl_seconds=settings.inflight_ttl_seconds,
    )

    @router.put(
        "/rooms/{room_id}/providers", status_code=201, responses=problem_responses(403, 423)
    )
    async def register_provider(
        room_id: str,
        body: ProviderRegisterRequest,
        actor: CurrentActor,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> ProviderResponse:
        """Register a provider, or update the one of the same room, category and name
        (201 new, 200 updated). Without `worker_id` a worker is created for it; with an
        `Idempotency-Key` a resend finds the worker and provider the first one made."""
        await check_writable(ctx, room_id, actor)
        check_register_lengths(body, ctx.limits)
        worker_id = str(body.worker_id) if body.worker_id is not None else None
        if idempotency_key:
            provider_id = keyed_provider_id(actor.user, idempotency_key)
            worker_id = worker_id or idempotent_id(actor.user, idempotency_key)
        else:
            provider_id = str(uuid.uuid4())
        command = RegisterProvider(
            provider_id=provider_id,
            room_id=room_id,
            category=body.category,
            name=body.name,
            schema=body.schema_,
            content_type=body.content_type,
            worker_id=worker_id or str(uuid.uuid4()),
            create_worker=body.worker_id is None,
            allowed_categories=settings.allowed_categories,
            actor=actor,
            now=ctx.clock(),
        )
        decision = await ctx.ledger.execute(command)
        provider = decision.state.providers[job_full_name(room_id, body.category, body.name)]
        if provider.id != command.provider_id:  # it existed, and keeps its id
            response.status_code = 200
        return provider_response(provider)

    @router.get("/rooms/{room_id}/providers")
    async def list_providers(
        room_id: str, actor: CurrentActor, limit: Limit = 50, offset: Offset = 0
    ) -> Paginated[ProviderResponse]:
        """Providers visible from the room (its own and `@global`), newest first."""
        check_room(room_id)

        def query(view: Projection) -> Paginated[ProviderResponse]:
            providers = view.providers_visible_from(room_id)
            return page([provider_response(p) for p in providers], limit, offset)

        return await ctx.ledger.read(query, liveness=False)

    @router.get("/rooms/{room_id}/providers/{provider_name:path}/info")
    async def get_provider_info(
        room_id: str, provider_name: ProviderName, actor: CurrentActor
    ) -> ProviderResponse:
        check_room(room_id)
        provider = await ctx.ledger.read(
            lambda view: resolve_provider(view, room_id, provider_name), liveness=False
        )
        return provider_response(provider)

    @router.get(
        "/rooms/{room_id}/providers/{provider_name:path}",
        response_class=Response,
        responses=_READ_RESPONSES,
    )
    async def read_provider(
        room_id: str,
        provider_name: ProviderName,
        request: Request,
        actor: CurrentActor,
        prefer: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Read from the provider with the query parameters: the cached result, or the
        one its worker sends within `Prefer: wait=N` seconds (capped; a default when
        absent); else 504 `provider-timeout` with `Retry-After`."""
        check_room(room_id)
        provider = await ctx.ledger.read(
            lambda view: resolve_provider(view, room_id, provider_name), liveness=False
        )
        requested = prefer_wait(prefer)
        if requested is None:
            timeout = settings.long_poll_default_seconds
        else:
            timeout = min(max(requested, 0), settings.long_poll_max_seconds)
        try:
            answer = await reads.read(provider, dict(request.query_params), timeout)
        except ProviderTimeoutError as error:
            refusal = problem_response(error)
            refusal.headers["Retry-After"] = str(error.retry_after_seconds)
            return refusal
        headers = {"Preference-Applied": f"wait={int(timeout)}"}
        return Response(
            content=answer.result.body,
            media_type=answer.result.content_type,
            headers=headers if answer.waited and requested is not None else None,
        )

    @router.post(
        "/providers/{provider_id}/results",
        status_code=204,
        responses=problem_responses(403),
        openapi_extra={"requestBody": _RESULT_BODY},
    )
    async def upload_provider_result(
        provider_id: uuid.UUID,
        request: Request,
        x_request_hash: RequestHash,
        actor: CurrentActor,
    ) -> Response:
        """Store the raw body as the provider's answer to `X-Request-Hash` (owner or
        superuser); wakes every read waiting for it, on every host."""
        provider = await ctx.ledger.read(
            lambda view: provider_by_id(view, str(provider_id)), liveness=False
        )
        if provider.user != actor.user and not actor.superuser:
            raise ForbiddenError("Not authorized to upload results for this provider")
        body = await read_body(request, ctx.limits.max_body_bytes)
        await reads.store_result(provider, x_request_hash, body)
        return Response(status_code=204)

    @router.delete("/providers/{provider_id}", status_code=204, responses=problem_responses(403))
    async def delete_provider(provider_id: uuid.UUID, actor: CurrentActor) -> Response:
        """Remove a provider (owner or superuser); its room is told to refresh."""
        key = str(provider_id)
        provider = await ctx.ledger.read(lambda view: provider_by_id(view, key), liveness=False)
        command = RemoveProvider(
            provider_name=provider.full_name, provider_id=key, actor=actor, now=ctx.clock()
        )
        await ctx.ledger.execute(command)
        return Response(status_code=204)

    return router
