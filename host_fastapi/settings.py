"""Host settings from `WORKERLEDGER_*` environment variables (pydantic-settings).

Each default carries its reason in the field description (`workerledger serve --help`
and the README list them). The input limits (`MAX_*`, `SOCKETIO_RATE` / `_BURST`) take
their defaults from `adapters.input_limits`, the same ones `create_router` and
`register_socketio_handlers` use for embedding hosts. `policies()` and
`input_limits()` are what the host's `LedgerRuntime` is built with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from workerledger.adapters.input_limits import DEFAULT_LIMITS, InputLimits
from workerledger.adapters.ports import StoreError
from workerledger.adapters.realtime.acks import EVENT_BURST, EVENTS_PER_SECOND
from workerledger.adapters.runtime import LedgerPolicies
from workerledger.adapters.store.url import DEFAULT_DATABASE_URL, scheme_of, sqlite_path
from workerledger.core import DEFAULT_CATEGORIES


class TokenInfo(BaseModel):
    """One entry of `AUTH_TOKENS`: `user` and optionally `superuser`; any other key is
    refused (a misspelt `"admin": true` must not silently make a plain user)."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1)
    superuser: bool = False


def check_database_url(url: str) -> str:
    """`url` if its form names a store `open_store` can open (nothing is opened);
    ValueError with the reason and the accepted forms otherwise."""
    try:
        scheme = scheme_of(url)
        if scheme == "sqlite":
            sqlite_path(url)
        elif scheme == "postgresql":
            _check_postgres_url(url)
    except StoreError as error:
        raise ValueError(str(error)) from None
    return url


def _check_postgres_url(url: str) -> None:
    try:
        from workerledger.adapters.store.postgres import parse_url
    except ImportError as error:
        raise ValueError(
            f"postgresql:// needs the PostgreSQL driver ({error.name} is not installed): "
            "pip install 'workerledger[postgres]'"
        ) from None
    try:
        parse_url(url)
    except ValueError as error:  # e.g. a port that is not a number
        raise ValueError(
            f"malformed PostgreSQL URL ({error}): use postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None


def split_categories(value: Any) -> Any:
    """`ALLOWED_CATEGORIES` as a JSON list (`["modifiers", "analysis"]`) or comma-separated
    (`modifiers,analysis`); blanks around names and empty items are dropped."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"not a JSON list ({error.msg}): give modifiers,analysis or "
                    '["modifiers", "analysis"]'
                ) from None
        else:
            value = text.split(",")
    if isinstance(value, list | tuple):
        names = [item.strip() if isinstance(item, str) else item for item in value]
        value = tuple(name for name in names if name != "")
        if not value:
            raise ValueError("no category given: name at least one, e.g. modifiers,analysis")
        for name in value:
            if isinstance(name, str) and (":" in name or any(c.isspace() for c in name)):
                raise ValueError(
                    f"category {name!r} holds ':' or a blank (a job is room:category:name)"
                )
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKERLEDGER_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLite file in the working directory: durable, no server to run. "
        "Use postgresql://... when several hosts share one log.",
    )
    auth_tokens: dict[str, TokenInfo] | None = Field(
        default=None,
        description='JSON {token: {"user": NAME, "superuser": BOOL}} (no other keys). Every '
        "route needs a token; when unset, `workerledger serve` creates one admin token and "
        "prints it once (see ADMIN_TOKEN_FILE to keep it across restarts).",
    )
    admin_token_file: Path | None = Field(
        default=None,
        description="Without AUTH_TOKENS: `workerledger serve` keeps its admin token in this "
        "file, written (mode 0600) on the first start and read at every later one, so "
        "workers keep a token that works after a restart. Not with AUTH_TOKENS.",
    )
    metrics_require_token: bool = Field(
        default=False,
        description="Whether GET /metrics (Prometheus) needs a bearer token (any user's). "
        "Off: scrapers usually hold no token, and the figures name no ids, payloads or "
        "users; turn it on when the port is reachable by people who should not see them.",
    )
    rest_fast_lane: bool = Field(
        default=True,
        description="Whether a worker's busiest requests (submit, claim, status report, "
        "heartbeat) are answered below FastAPI's per-request layers when they are "
        "well-formed (adapters/rest/fast_lane.py); the answers are the same either way. "
        "Off: every request goes through FastAPI.",
    )
    heartbeat_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="zndraw-joblib's SDK heartbeats every 30 s over REST: 60 s tolerates one "
        "late beat (0.1.7's own default). Socket.IO workers are refreshed by their host "
        "every sweep, so this bounds only silent REST-only workers and host crashes.",
    )
    sweep_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Reaping lag after a timeout, and how often a host refreshes its attached "
        "workers; one pass over the in-memory view is cheap.",
    )
    claim_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Claim lease: a CLAIMED task its live worker has not reported running "
        "within this long is requeued (its attempt fenced), so a lost claim answer strands "
        "a task for at most this long plus one sweep. Workers report running at once.",
    )
    checkpoint_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often the host writes the entities its view changed to the read-model "
        "tables (and once at shutdown), so a restart loads them instead of folding the log.",
    )
    disconnect_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        description="A dropped worker keeps its claims this long: rolling restarts and blips "
        "reconnect within ~1-5 s. 0 releases its tasks at once.",
    )
    ping_interval_seconds: int = Field(
        default=5,
        ge=1,
        description="engine.io ping: a silent partition is seen within 5-10 s (a crash is seen "
        "at once through TCP). Integers only (the handshake truncates).",
    )
    ping_timeout_seconds: int = Field(
        default=5,
        ge=1,
        description="With the interval, tolerates a worker event loop blocked for a few "
        "seconds before it is declared gone.",
    )
    allowed_categories: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CATEGORIES,
        description="zndraw-joblib's default job categories; comma-separated "
        '(modifiers,analysis) or a JSON list (["modifiers", "analysis"]).',
    )
    long_poll_max_wait_seconds: int = Field(
        default=60, ge=0, description="Cap on `Prefer: wait=N` (zndraw-joblib's default)."
    )
    allowed_provider_categories: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description="Provider categories a registration may use; unset allows any "
        "(zndraw-joblib's default); comma-separated or a JSON list.",
    )
    provider_result_ttl_seconds: float = Field(
        default=300.0, gt=0, description="How long a provider's answer is served from the cache."
    )
    provider_inflight_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A read's provider_request is sent once until it is answered or this long.",
    )
    provider_long_poll_default_seconds: float = Field(
        default=5.0, ge=0, description="How long a provider read waits without `Prefer: wait=N`."
    )
    provider_long_poll_max_seconds: float = Field(
        default=30.0, ge=0, description="Cap on a provider read's `Prefer: wait=N`."
    )
    socketio_manager_url: str | None = Field(
        default=None,
        description="redis://... to share Socket.IO rooms and emits between several hosts "
        "(AsyncRedisManager); notifications only, state stays in the store.",
    )
    socketio_channel: str = Field(
        default="workerledger",
        min_length=1,
        description="The Redis pub/sub channel of that manager: every host of one deployment "
        "uses the same one; separate deployments (or test runs) sharing a Redis use their own, "
        "so they neither hear nor pay for each other's traffic.",
    )
    socketio_skip_empty_rooms: bool = Field(
        default=True,
        description="Whether an emit to a watcher, job or provider room is published to Redis "
        "only when another host has a client in it (every host records its rooms in Redis "
        "either way). Set false on every host while any host of the deployment runs a "
        "version that does not record its rooms (a rolling upgrade).",
    )
    socketio_mirror_lease_seconds: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="How long a host may trust its local copy of which rooms other hosts are "
        "in, between renewals (every third of it): emits to rooms nobody else is in then cost "
        "no Redis call. A client's first join of a room on a host waits until every other "
        "host acknowledged it (about a Redis round trip), at most this long plus a tenth when "
        "a host does not answer, and in the first this-long of a new deployment or after "
        "Redis lost its data. 0: every such emit asks Redis; set 0 on every host while any "
        "host of the deployment runs a version without this setting (a rolling upgrade: such "
        "hosts do not announce their rooms).",
    )
    max_body_bytes: int = Field(
        default=DEFAULT_LIMITS.max_body_bytes,
        ge=1024,
        description="Largest REST body and Socket.IO message (413 `body-too-large`): room for "
        "any real job schema or task payload, while a flood of big bodies cannot fill memory "
        "or the log.",
    )
    max_json_depth: int = Field(
        default=DEFAULT_LIMITS.max_json_depth,
        ge=2,
        le=200,
        description="Deepest nesting of objects/arrays in a body or event payload (422 "
        "`json-too-deep`); far below the recursion limits of the parsers and serialisers "
        "a stored value passes through, so everything accepted can be read back.",
    )
    max_room_id_length: int = Field(
        default=DEFAULT_LIMITS.max_room_id_length,
        ge=1,
        description="Longest room id (422 `value-too-long`).",
    )
    max_job_name_length: int = Field(
        default=DEFAULT_LIMITS.max_job_name_length,
        ge=1,
        description="Longest job `name` (422 `value-too-long`); a full name "
        "`room:category:name` is bounded by the three lengths.",
    )
    max_category_length: int = Field(
        default=DEFAULT_LIMITS.max_category_length,
        ge=1,
        description="Longest category (422 `value-too-long`).",
    )
    max_key_length: int = Field(
        default=DEFAULT_LIMITS.max_key_length,
        ge=1,
        description="Longest Idempotency-Key and Socket.IO worker id (422 `value-too-long`).",
    )
    max_error_length: int = Field(
        default=DEFAULT_LIMITS.max_error_length,
        ge=1,
        description="Longest `error` text of a task report (422 `value-too-long`): room for "
        "a traceback.",
    )
    socketio_rate: float = Field(
        default=EVENTS_PER_SECOND,
        gt=0,
        description="Socket.IO events per second per connection after the burst (ack 429 "
        "`rate-limited`, nothing recorded): a worker sends a few per job, so any client can no "
        "longer grow the log at request rate.",
    )
    socketio_burst: int = Field(
        default=EVENT_BURST,
        ge=1,
        description="Socket.IO events a connection may send at once (a worker joining many "
        "job rooms on connect).",
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("allowed_categories", mode="before")
    @classmethod
    def _categories(cls, value: Any) -> Any:
        return split_categories(value)

    @field_validator("allowed_provider_categories", mode="before")
    @classmethod
    def _provider_categories(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return split_categories(value)

    @field_validator("admin_token_file", mode="before")
    @classmethod
    def _token_file(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        if self.auth_tokens and self.admin_token_file is not None:
            raise ValueError(
                "WORKERLEDGER_AUTH_TOKENS and WORKERLEDGER_ADMIN_TOKEN_FILE are both set: "
                "unset ADMIN_TOKEN_FILE (it only keeps the token serve generates without "
                "AUTH_TOKENS), or unset AUTH_TOKENS"
            )
        return self

    def policies(self) -> LedgerPolicies:
        """The rules and timers the host's `LedgerRuntime` runs with."""
        return LedgerPolicies(
            heartbeat_timeout_seconds=self.heartbeat_timeout_seconds,
            disconnect_grace_seconds=self.disconnect_grace_seconds,
            sweep_interval_seconds=self.sweep_interval_seconds,
            claim_timeout_seconds=self.claim_timeout_seconds,
            checkpoint_interval_seconds=self.checkpoint_interval_seconds,
            allowed_categories=self.allowed_categories,
            long_poll_max_wait_seconds=self.long_poll_max_wait_seconds,
            allowed_provider_categories=self.allowed_provider_categories,
            provider_result_ttl_seconds=self.provider_result_ttl_seconds,
            provider_inflight_ttl_seconds=self.provider_inflight_ttl_seconds,
            provider_long_poll_default_seconds=self.provider_long_poll_default_seconds,
            provider_long_poll_max_seconds=self.provider_long_poll_max_seconds,
            events_per_second=self.socketio_rate,
            event_burst=self.socketio_burst,
        )

    def input_limits(self) -> InputLimits:
        return InputLimits(
            max_body_bytes=self.max_body_bytes,
            max_json_depth=self.max_json_depth,
            max_room_id_length=self.max_room_id_length,
            max_job_name_length=self.max_job_name_length,
            max_category_length=self.max_category_length,
            max_key_length=self.max_key_length,
            max_error_length=self.max_error_length,
        )
