"""`workerledger serve`: run the reference host under uvicorn.

Start-up runs in this order, so a mistake is reported before anything is printed or
opened: the settings (every WORKERLEDGER_* variable and flag), the admin token file,
the listening socket (a port in use), the database (a bad URL, a missing schema).
Each of these is one or two lines on stderr and exit code 2 (cli_errors.py); so is a
failure of the lifespan start-up (an event in the log that cannot be decoded), which
uvicorn reports as one line. Once it listens, `serve` prints the admin token (when it
made one), the URL, the database, the settings that differ from the defaults and
where the API docs and the health check are. Exit 0 after a normal shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import socket
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import LOG_LEVELS

from workerledger.adapters.observability.log_format import LOG_FORMATS, log_config

from .cli_config import changed_settings, describe_database, load_settings, misspelt_variables
from .cli_errors import CANNOT_START, ConfigError

DEFAULT_HOST, DEFAULT_PORT, DEFAULT_LOG_LEVEL = "127.0.0.1", 8000, "warning"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give 0-65535 (0: a free one)"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: give 0-65535 (0: a free one)")
    return port


def add_commands(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the reference host (REST + Socket.IO)",
        description=_wrapped(
            "Run the reference host: the zndraw-joblib 0.1.7 REST API under /v1/joblib, "
            "Socket.IO, API docs at /docs, health check at /healthz. Settings come from "
            "WORKERLEDGER_* variables (below); a wrong one stops serve with a line naming "
            "it (exit 2)."
        ),
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", help=f"interface to listen on (default: $WORKERLEDGER_HOST, else {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=_port,
        help=f"port; 0 picks a free one (default: $WORKERLEDGER_PORT, else {DEFAULT_PORT})",
    )
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=list(LOG_LEVELS),
        help="log level of uvicorn and workerledger; the lifecycle lines (INFO) show unless "
        f"error or critical (default: $WORKERLEDGER_LOG_LEVEL, else {DEFAULT_LOG_LEVEL})",
    )
    serve.add_argument(
        "--log-format",
        type=str.lower,
        choices=list(LOG_FORMATS),
        help="json: one JSON object per log line; the lifecycle lines (worker_id, task_id, "
        "...) as fields (default: $WORKERLEDGER_LOG_FORMAT, else text)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        help="one log line per HTTP request (default: $WORKERLEDGER_ACCESS_LOG, else off)",
    )
    serve.set_defaults(func=run_serve)


def _wrapped(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=88, initial_indent=indent, subsequent_indent=indent)


def _settings_help() -> str:
    """Every setting with its default and the reason for it (Settings' descriptions)."""
    from workerledger.host_fastapi.settings import Settings

    lines = ["settings (WORKERLEDGER_<NAME>=value):"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = ",".join(default) if isinstance(default, tuple) else default
        lines.append(f"  {name.upper()} (default: {'unset' if shown is None else shown})")
        lines.append(_wrapped(field.description or "", indent="      "))
    lines.append(
        "  SQLITE_SYNCHRONOUS (default: NORMAL)\n"
        + _wrapped("NORMAL, FULL or EXTRA: SQLite's PRAGMA synchronous (README).", "      ")
    )
    lines += [
        "",
        "examples:",
        "  workerledger serve                        # SQLite ./workerledger.db, port 8000",
        "  WORKERLEDGER_PORT=9000 workerledger serve",
        "  WORKERLEDGER_ADMIN_TOKEN_FILE=~/.workerledger-admin workerledger serve",
        '  WORKERLEDGER_AUTH_TOKENS=\'{"secret": {"user": "alice"}}\' workerledger serve',
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    log_level: str
    where: str  # the flags or variables host and port came from, for error messages
    log_format: str = "text"  # or "json"
    access_log: bool = False


def serve_options(args: argparse.Namespace, environ: dict[str, str]) -> ServeOptions:
    """--host / --port / --log-level, else their WORKERLEDGER_* variables, else defaults."""
    host, host_from = _chosen(args.host, "--host", environ, "WORKERLEDGER_HOST", DEFAULT_HOST)
    port_text = None if args.port is None else str(args.port)
    text, port_from = _chosen(port_text, "--port", environ, "WORKERLEDGER_PORT", str(DEFAULT_PORT))
    try:
        port = _port(text)
    except argparse.ArgumentTypeError as error:  # only a variable: argparse checked the flag
        raise ConfigError(f"{port_from}: {error}") from None
    level, level_from = _chosen(
        args.log_level, "--log-level", environ, "WORKERLEDGER_LOG_LEVEL", DEFAULT_LOG_LEVEL
    )
    if level.lower() not in LOG_LEVELS:
        raise ConfigError(f"{level_from} is not a log level: give one of {', '.join(LOG_LEVELS)}")
    log_format, format_from = _chosen(
        getattr(args, "log_format", None), "--log-format", environ, "WORKERLEDGER_LOG_FORMAT",
        "text",
    )  # fmt: skip
    if log_format.lower() not in LOG_FORMATS:
        raise ConfigError(f"{format_from} is not a log format: give text or json")
    where = f"{host_from} {port_from}"
    access_log = _access_log(getattr(args, "access_log", None), environ)
    return ServeOptions(host, port, level.lower(), where, log_format.lower(), access_log)


def _access_log(flag: bool | None, environ: dict[str, str]) -> bool:
    """--access-log / --no-access-log, else WORKERLEDGER_ACCESS_LOG (true/false), else off."""
    if flag is not None:
        return flag
    value = environ.get("WORKERLEDGER_ACCESS_LOG", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"WORKERLEDGER_ACCESS_LOG={value!r} is not a switch: give true or false")


def _chosen(
    flag_value: str | None, flag: str, environ: dict[str, str], name: str, default: str
) -> tuple[str, str]:
    """(value, where it came from): the flag, else the variable, else the default."""
    if flag_value is not None:
        return flag_value, f"{flag} {flag_value}"
    value = environ.get(name, "").strip()
    if value:
        return value, f"{name}={value!r}"
    return default, f"{flag} {default} (the default)"


def run_serve(args: argparse.Namespace) -> int:
    from workerledger.adapters.ports import StoreError
    from workerledger.host_fastapi.app import create_app
    from workerledger.host_fastapi.settings import TokenInfo

    from .cli_token import admin_token

    for warning in misspelt_variables(os.environ):
        print(f"workerledger: warning: {warning}", file=sys.stderr)
    settings = load_settings()
    options = serve_options(args, dict(os.environ))
    changed = changed_settings(settings)
    token = None
    if not settings.auth_tokens:
        token = admin_token(settings.admin_token_file)
        admin = {token.token: TokenInfo(user="admin", superuser=True)}
        settings = settings.model_copy(update={"auth_tokens": admin})
    sock = _listen(options)
    try:
        app = create_app(settings)
    except StoreError as error:
        sock.close()
        raise ConfigError(f"WORKERLEDGER_DATABASE_URL: {error}") from error
    if token is not None:
        token.keep()

    def banner(url: str) -> list[str]:
        lines = [token.announcement()] if token is not None else []
        lines.append(f"workerledger listening on {url}")
        lines.append(f"  database: {describe_database(settings.database_url)}")
        lines.append(f"  settings: {', '.join(changed) if changed else 'all defaults'}")
        lines.append(f"  API docs: {url}/docs   health check: {url}/healthz")
        return lines

    started = True
    with contextlib.suppress(KeyboardInterrupt):
        started = asyncio.run(_serve(app, sock, options, banner))
    return 0 if started else CANNOT_START


def _listen(options: ServeOptions) -> socket.socket:
    """A socket bound to host:port (ConfigError naming the flags when it cannot be)."""
    host, port, where = options.host, options.port, options.where
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP; without it every keep-alive response waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"{where}: port {port} is already in use: stop what listens there, or choose "
                "another --port (or WORKERLEDGER_PORT; 0 picks a free one)"
            ) from error
        reason = error.strerror or str(error)
        raise ConfigError(
            f"{where}: cannot listen there ({reason}): give an address of this machine, "
            "e.g. 127.0.0.1 or 0.0.0.0 (--host or WORKERLEDGER_HOST)"
        ) from error
    return sock


class _Server(uvicorn.Server):
    """Prints the banner with the real address once uvicorn listens (also for --port 0)."""

    def __init__(self, config: uvicorn.Config, banner: Callable[[str], list[str]]) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print("\n".join(self.banner(f"http://{shown}:{port}")), flush=True)


async def _serve(
    app: Any, sock: socket.socket, options: ServeOptions, banner: Callable[[str], list[str]]
) -> bool:
    """Serve until shut down; False if the app failed to start.

    Every log line goes to stderr in `options.log_format`; the lifecycle lines print at
    INFO unless the log level is error or critical (log_format.log_config)."""
    level = LOG_LEVELS[options.log_level]
    config = uvicorn.Config(
        app,
        log_config=log_config(
            log_format="json" if options.log_format == "json" else "text",
            level=level,
            access_log=options.access_log,
        ),
        log_level=None,  # the levels are in log_config (access lines need INFO of their own)
        access_log=options.access_log,
        lifespan="on",
        ws_ping_interval=None,  # engine.io pings already; uvicorn's own would also close
        ws_ping_timeout=None,  # silent sockets ("transport close") on its own schedule
    )
    server = _Server(config, banner)
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits (3) when the lifespan start-up failed; it said why
        if server.started:
            raise
    finally:
        sock.close()
    return server.started
