"""Provider reads, independent of the web framework.

A read answers from the result cache; otherwise the first reader of a request hash
(`acquire_inflight`) sends `provider_request` to the provider's room, and every reader
waits for the result the provider's worker POSTs, on any host sharing the cache.
Storing a result releases the in-flight mark, wakes the waiters and tells the
provider's room (`provider_result_ready`).

`request_hash` is zndraw-joblib 0.1.7's (SHA-256 of the query parameters as JSON with
sorted keys and compact separators), so `X-Request-Hash` values agree with 0.1.7
workers; the cache keys are 0.1.7's too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from workerledger.core import DomainError, Emit, ProviderState, room_of_provider, room_of_watchers

from ..ledger import Emitter
from ..ports import StoreError
from .results import CachedResult, ResultCache


class ProviderTimeoutError(DomainError):
    """No result within the read's wait (504 `provider-timeout`; retry after a while)."""

    code = "provider-timeout"
    retry_after_seconds: ClassVar[int] = 2


class ResultCacheUnavailableError(StoreError):
    """The result cache failed (its Redis is away): 503 `store-unavailable`, retryable."""


def canonical_params(params: Mapping[str, Any]) -> str:
    """The query parameters as 0.1.7 sends them to providers: sorted, compact JSON."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"))


def request_hash(params: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of `canonical_params(params)` (0.1.7's `request_hash`)."""
    return hashlib.sha256(canonical_params(params).encode()).hexdigest()


def result_key(provider_name: str, digest: str) -> str:
    return f"provider-result:{provider_name}:{digest}"


def inflight_key(provider_name: str, digest: str) -> str:
    return f"provider-inflight:{provider_name}:{digest}"


@dataclass(frozen=True)
class ProviderAnswer:
    result: CachedResult
    waited: bool  # False: the cache held it already


@contextmanager
def _cache_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        raise ResultCacheUnavailableError(f"provider result cache unavailable: {error}") from error


class ProviderReads:
    """Reads and results of providers over one result cache; emissions go to `emitter`
    (the ledger's, so Socket.IO delivers them)."""

    def __init__(
        self,
        results: ResultCache,
        emitter: Emitter,
        *,
        result_ttl_seconds: float,
        inflight_ttl_seconds: float,
    ) -> None:
        self.results = results
        self.emitter = emitter
        self.result_ttl_seconds = result_ttl_seconds
        self.inflight_ttl_seconds = inflight_ttl_seconds

    async def read(
        self, provider: ProviderState, params: Mapping[str, Any], timeout: float
    ) -> ProviderAnswer:
        """The cached result, or the one the provider stores within `timeout` seconds;
        ProviderTimeoutError otherwise. Dispatches at most one request per hash in flight."""
        name = provider.full_name
        digest = request_hash(params)
        key = result_key(name, digest)
        with _cache_errors():
            cached = await self.results.get(key)
        if cached is not None:
            return ProviderAnswer(cached, waited=False)
        with _cache_errors():
            first = await self.results.acquire_inflight(
                inflight_key(name, digest), self.inflight_ttl_seconds
            )
        if first:
            data = {"request_id": digest, "provider_name": name, "params": canonical_params(params)}
            await self.emitter.deliver(
                [Emit(event="provider_request", data=data, to=room_of_provider(name))]
            )
        with _cache_errors():
            result = await self.results.wait_for(key, timeout)
        if result is None:
            raise ProviderTimeoutError(f"Provider '{name}' did not respond within {timeout:g}s")
        return ProviderAnswer(result, waited=True)

    async def store_result(self, provider: ProviderState, digest: str, body: bytes) -> None:
        """Keep `body` as the answer to `digest` (with the provider's content type) for
        the result TTL, release the in-flight mark, wake every waiter on every host,
        and send `provider_result_ready` to the provider's room."""
        name = provider.full_name
        key = result_key(name, digest)
        with _cache_errors():
            result = CachedResult(provider.content_type, body)
            await self.results.store(key, result, self.result_ttl_seconds)
            await self.results.release_inflight(inflight_key(name, digest))
            await self.results.notify(key)
        ready = {"provider_name": name, "request_hash": digest}
        await self.emitter.deliver(
            [Emit(event="provider_result_ready", data=ready, to=room_of_watchers(provider.room_id))]
        )
