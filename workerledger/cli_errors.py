"""One rule for start-up errors, the same for every command.

A configuration or environment mistake (a setting, a flag, a database that cannot be
opened, a port in use) is raised as `ConfigError`: one or two lines that name the
setting or flag, say what is wrong and what to do. `run_command` prints it as
`workerledger: error: ...` on stderr and exits 2, without a traceback; `--debug`
prints the traceback too. Unexpected exceptions (bugs) keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from workerledger.adapters.ports import StoreError

CANNOT_START = 2  # exit code of every configuration or environment mistake
ENV_PREFIX = "WORKERLEDGER_"
TOKEN_ENTRY = '{"TOKEN": {"user": "NAME", "superuser": false}}'


class ConfigError(Exception):
    """A configuration or environment mistake: what is wrong and what to do."""


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; a ConfigError or StoreError becomes its lines and exit code 2."""
    try:
        return func(args)
    except (ConfigError, StoreError) as error:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"workerledger: error: {error}", file=sys.stderr)
        return CANNOT_START


def variable(field: str) -> str:
    """The environment variable of a Settings field."""
    return ENV_PREFIX + field.upper()


def settings_error(error: ValidationError | SettingsError) -> ConfigError:
    """The Settings' refusal as one line per wrong setting, naming its variable (and,
    for one, where the settings are listed)."""
    if isinstance(error, SettingsError):
        match = re.search(r'field "(\w+)"', str(error))
        name = variable(match.group(1)) if match else "a WORKERLEDGER_* variable"
        return ConfigError(f"{name}: cannot parse its value ({error})")
    lines = [_issue(issue) for issue in error.errors()]
    if len(lines) == 1:
        lines.append("(settings: WORKERLEDGER_* variables; `workerledger serve --help` lists them)")
    return ConfigError("\n".join(lines))


def _issue(issue: Any) -> str:
    loc = tuple(issue.get("loc", ()))
    message = str(issue.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:
        return message
    name = variable(str(loc[0]))
    if loc[0] == "auth_tokens":
        return f"{name}: {_token_issue(loc[1:], issue, message)}"
    if loc[0] in ("database_url", "allowed_categories", "admin_token_file"):
        return f"{name}: {message}"
    return f"{name}={issue.get('input')!r}: {message}"


def _token_issue(path: tuple[Any, ...], issue: Any, message: str) -> str:
    """What is wrong with AUTH_TOKENS, without printing a token."""
    value = issue.get("input")
    if not path:
        if isinstance(value, str):
            try:
                json.loads(value)
            except json.JSONDecodeError as error:
                return f"not valid JSON ({error.msg} at character {error.pos}): give {TOKEN_ENTRY}"
        return f"must be a JSON object {TOKEN_ENTRY}, not {type(value).__name__}"
    entry = f"the entry of token {_masked(str(path[0]))}"
    if len(path) == 1:
        return f'{entry} must be an object {{"user": "NAME", "superuser": false}}, not {value!r}'
    key = path[1]
    if issue.get("type") == "extra_forbidden":
        return (
            f"{entry} has an unknown key {key!r}: an entry has only "
            '"user" and "superuser" (true makes an admin)'
        )
    if issue.get("type") == "missing":
        return f'{entry} has no "{key}": give {TOKEN_ENTRY}'
    return f"{entry}, {key}={value!r}: {message}"


def _masked(token: str) -> str:
    """A token named without revealing it: its first two characters and its length."""
    return f"'{token[:2]}...' ({len(token)} characters)"
