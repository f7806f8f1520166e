"""Log output for machines and people: `JsonFormatter` and the logging configuration of
`workerledger serve` (`log_config`), for `logging.config.dictConfig` or uvicorn.

JSON: one object per line with `time` (UTC, ISO 8601), `level`, `logger`, `message`,
then every attribute the caller passed in `extra` (the lifecycle log's `event`,
`worker_id`, `task_id`, ...), and `exc_info` when there is a traceback. uvicorn's
access lines also get `client`, `method`, `path`, `http_version` and `status`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LIFECYCLE_LOGGER = "workerledger.lifecycle"

_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            keys = ("client", "method", "path", "http_version", "status")
            out.update(zip(keys, args, strict=True))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def lifecycle_level(level: int) -> int:
    """The lifecycle log's level for a host log level: its INFO lines print at the
    default (WARNING) and below; ERROR or CRITICAL silence them too."""
    return level if level > logging.WARNING else min(level, logging.INFO)


def log_config(*, log_format: LogFormat, level: int, access_log: bool) -> dict[str, Any]:
    """The `dictConfig` of `workerledger serve`: everything to stderr in one format.

    `level` applies to uvicorn's and workerledger's loggers (other libraries log
    WARNING and above); the lifecycle lines follow `lifecycle_level`; uvicorn's access
    lines (INFO) print when `access_log` is true, whatever `level` says.
    """
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"workerledger": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "workerledger",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": max(level, logging.WARNING)},
        "loggers": {
            "workerledger": {"level": level},
            LIFECYCLE_LOGGER: {"level": lifecycle_level(level)},
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.asgi": {"level": level},
            "uvicorn.access": {"level": logging.INFO if access_log else logging.WARNING},
        },
    }
