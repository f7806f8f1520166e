"""The admin token `workerledger serve` makes when WORKERLEDGER_AUTH_TOKENS is unset.

Without WORKERLEDGER_ADMIN_TOKEN_FILE it is new at every start (workers started with
the old one are refused). With it, the first start writes the token to that file
(mode 0600, created exclusively) and every later start reads it back; a file others
can read, an empty one or one that cannot be read is refused before anything opens.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .cli_errors import ConfigError

ENV_TOKEN_FILE = "WORKERLEDGER_ADMIN_TOKEN_FILE"


@dataclass(frozen=True)
class AdminToken:
    token: str
    path: Path | None  # where it is kept, if anywhere
    read_back: bool  # True: an earlier start wrote it

    def announcement(self) -> str:
        """The line `serve` prints once it listens (the token stays the last word when shown)."""
        head = "no WORKERLEDGER_AUTH_TOKENS set; admin token"
        if self.path is None:
            return (
                f"{head} (shown once, a new one at every start unless {ENV_TOKEN_FILE} "
                f"is set): {self.token}"
            )
        if self.read_back:
            return f"{head}: the one kept in {self.path}"
        return f"{head} (kept in {self.path}, reused at every start): {self.token}"

    def keep(self) -> None:
        """Write a new token to its file (0600, never over an existing file)."""
        if self.path is None or self.read_back:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise ConfigError(
                f"{ENV_TOKEN_FILE}={self.path}: cannot create it ({error.strerror}): "
                "name a file in an existing directory you can write to"
            ) from error
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(self.token + "\n")


def admin_token(path: Path | None) -> AdminToken:
    """The admin token: read back from `path`, or new (`keep()` writes it to `path`).
    Nothing is written here; a file that could not be created is refused already."""
    if path is None:
        return AdminToken(secrets.token_urlsafe(24), None, read_back=False)
    try:
        return AdminToken(_read(path), path, read_back=True)
    except FileNotFoundError:
        directory = path.parent
        if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{ENV_TOKEN_FILE}={path}: cannot create it in {directory}: name a file in "
                "an existing directory you can write to"
            ) from None
        return AdminToken(secrets.token_urlsafe(24), path, read_back=False)


def _read(path: Path) -> str:
    name = f"{ENV_TOKEN_FILE}={path}"
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{name} is a directory: name a file (it is created on first start)")
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, ConfigError):
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{name}: cannot read it ({error}): fix its permissions") from error
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{name} can be read or written by others (mode {stat.S_IMODE(mode):04o}): "
            f"chmod 600 {path}"
        )
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(
            f"{name} holds no single token: delete it (the next start writes a new one) "
            "or write one token in it"
        )
    return token
