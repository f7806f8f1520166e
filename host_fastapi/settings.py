"""Host settings from `WORKERLEDGER_*` environment variables (pydantic-settings).

Each default carries its reason in the field description (`workerledger serve --help`
and the README list them). The input limits (`MAX_*`, `SOCKETIO_RATE` / `_BURST`) take
their defaults from `adapters.input_limits`, the same ones `create_router` and
`register_socketio_handlers` use for embedding hosts. `policies()` and
`input_limits()` are what the host's `LedgerRuntime` is built with.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from workerledger.adapters.input_limits import DEFAULT_LIMITS, InputLimits
from workerledger.adapters.realtime.acks import EVENT_BURST, EVENTS_PER_SECOND
from workerledger.adapters.runtime import LedgerPolicies
from workerledger.adapters.store.url import DEFAULT_DATABASE_URL
from workerledger.core import DEFAULT_CATEGORIES


class TokenInfo(BaseModel):
    user: str = Field(min_length=1)
    superuser: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKERLEDGER_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLite file in the working directory: durable, no server to run. "
        "Use postgresql://... when several hosts share one log.",
    )
    auth_tokens: dict[str, TokenInfo] | None = Field(
        default=None,
        description='JSON {token: {"user": NAME, "superuser": BOOL}}. Every route needs a '
        "token; when unset, `workerledger serve` creates one admin token and prints it once.",
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
    allowed_categories: tuple[str, ...] = Field(
        default=DEFAULT_CATEGORIES, description="zndraw-joblib's default job categories."
    )
    long_poll_max_wait_seconds: int = Field(
        default=60, ge=0, description="Cap on `Prefer: wait=N` (zndraw-joblib's default)."
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
