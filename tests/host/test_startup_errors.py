"""One rule for start-up errors: a configuration or environment mistake in any command
is one or two lines on stderr naming the setting or flag, exit code 2, no traceback
(`--debug` adds it), and nothing printed or opened before the settings are valid.

Most cases run the real command line in this process (`workerledger.cli.main`); the
entry point itself runs as a subprocess once for each kind of outcome."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerledger.host_fastapi.settings import Settings

from workerledger.cli import build_parser, main
from workerledger.cli_config import changed_settings
from workerledger.cli_host import serve_options

TOKENS = json.dumps({"tok-alice": {"user": "alice"}})


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WORKERLEDGER_* variable from outside; run in an empty directory."""
    for name in list(os.environ):
        if name.upper().startswith("WORKERLEDGER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line; assert it refused as the rule says; its stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("workerledger: error: "), err
    return err


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        ({"DATABASE_URL": "sqlit:///x.db"}, "WORKERLEDGER_DATABASE_URL", "unsupported"),
        ({"DATABASE_URL": "postgresql://u@h:port/db"}, "WORKERLEDGER_DATABASE_URL",
         "malformed PostgreSQL URL"),
        ({"AUTH_TOKENS": "{alice: 1}"}, "WORKERLEDGER_AUTH_TOKENS", "not valid JSON"),
        ({"AUTH_TOKENS": '["tok"]'}, "WORKERLEDGER_AUTH_TOKENS", "must be a JSON object"),
        ({"AUTH_TOKENS": '{"s3cret-tok": {"user": "alice", "admin": true}}'},
         "WORKERLEDGER_AUTH_TOKENS", "unknown key 'admin'"),
        ({"AUTH_TOKENS": '{"s3cret-tok": {"name": "alice"}}'}, "WORKERLEDGER_AUTH_TOKENS",
         "unknown key 'name'"),
        ({"ALLOWED_CATEGORIES": "[modifiers"}, "WORKERLEDGER_ALLOWED_CATEGORIES",
         "not a JSON list"),
        ({"ALLOWED_CATEGORIES": "a:b"}, "WORKERLEDGER_ALLOWED_CATEGORIES", "holds ':'"),
        ({"HEARTBEAT_TIMEOUT_SECONDS": "-1"}, "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS",
         "greater than 0"),
        ({"PORT": "eighty"}, "WORKERLEDGER_PORT", "is not a port"),
        ({"LOG_LEVEL": "loud"}, "WORKERLEDGER_LOG_LEVEL", "is not a log level"),
        ({"SQLITE_SYNCHRONOUS": "fast"}, "WORKERLEDGER_SQLITE_SYNCHRONOUS", "NORMAL, FULL"),
        ({"AUTH_TOKENS": TOKENS, "ADMIN_TOKEN_FILE": "admin.token"},
         "WORKERLEDGER_ADMIN_TOKEN_FILE", "both set"),
    ],
)  # fmt: skip
def test_serve_names_the_wrong_setting_and_opens_nothing(
    capsys, monkeypatch, tmp_path, variables, named, says
):
    # Given one wrong WORKERLEDGER_* variable
    for name, value in variables.items():
        monkeypatch.setenv(f"WORKERLEDGER_{name}", value)
    # When serve starts
    err = (
        refused(capsys, "serve", "--port", "0")
        if "PORT" not in variables
        else refused(capsys, "serve")
    )
    # Then one line names it and says what is wrong; no token is printed or leaked
    assert named in err and says in err
    assert "s3cret" not in err
    # And nothing was opened or written: no database file, no token file
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_port_in_use_naming_the_flag_or_the_variable(
    capsys, monkeypatch, tmp_path, busy_port
):
    monkeypatch.setenv("WORKERLEDGER_ADMIN_TOKEN_FILE", "admin.token")
    err = refused(capsys, "serve", "--port", str(busy_port))
    assert f"--port {busy_port}" in err and "already in use" in err
    # WORKERLEDGER_PORT is honoured: the same port from the variable is the one refused
    monkeypatch.setenv("WORKERLEDGER_PORT", str(busy_port))
    err = refused(capsys, "serve")
    assert f"WORKERLEDGER_PORT='{busy_port}'" in err and "already in use" in err
    assert list(tmp_path.iterdir()) == []  # neither the database nor the token file written


def test_a_bad_flag_is_argparse_usage_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--log-level", "loud"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --log-level: invalid choice: 'loud'" in err and "Traceback" not in err


def test_the_admin_token_file_must_be_private(capsys, monkeypatch, tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("tok\n")
    path.chmod(0o644)
    monkeypatch.setenv("WORKERLEDGER_ADMIN_TOKEN_FILE", str(path))
    err = refused(capsys, "serve", "--port", "0")
    assert "WORKERLEDGER_ADMIN_TOKEN_FILE" in err and f"chmod 600 {path}" in err
    path.chmod(0o600)
    path.write_text("two words\n")
    assert "holds no single token" in refused(capsys, "serve", "--port", "0")


@pytest.mark.parametrize("command", [["history", "w1"], ["rebuild"], ["migrate"], ["workers"],
                                     ["tasks"], ["jobs"], ["status"]])  # fmt: skip
def test_every_database_command_names_where_its_url_came_from(capsys, monkeypatch, command):
    # From the flag
    err = refused(capsys, *command, "--database-url", "mysql://db/x")
    assert "--database-url: unsupported database URL 'mysql://db/x'" in err
    # From the variable
    monkeypatch.setenv("WORKERLEDGER_DATABASE_URL", "mysql://db/x")
    err = refused(capsys, *command)
    assert "WORKERLEDGER_DATABASE_URL: unsupported database URL" in err


@pytest.mark.parametrize("command", ["workers", "tasks", "jobs", "status"])
def test_the_state_commands_name_what_is_missing(capsys, monkeypatch, command):
    # No database file where the default points
    err = refused(capsys, command)
    assert "the default database" in err and "--database-url or --url" in err
    # memory:// lives in the host process only
    assert "read it with --url" in refused(capsys, command, "--database-url", "memory://")
    # A host URL without a token
    err = refused(capsys, command, "--url", "http://127.0.0.1:9")
    assert "--url needs a token" in err and "WORKERLEDGER_TOKEN" in err
    # A host that does not answer
    monkeypatch.setenv("WORKERLEDGER_TOKEN", "tok")
    room = ["--room", "lab"] if command == "tasks" else []
    err = refused(capsys, command, "--url", "http://127.0.0.1:9", *room)
    assert "--url http://127.0.0.1:9: cannot reach the host" in err


def test_debug_adds_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("WORKERLEDGER_AUTH_TOKENS", "{bad")
    assert main(["serve", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "WORKERLEDGER_AUTH_TOKENS: not valid JSON" in err
    assert main(["--debug", "history", "x", "--database-url", "mysql://x/y"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_misspelt_variable_is_pointed_out(capsys, monkeypatch):
    monkeypatch.setenv("WORKERLEDGER_HEARTBEAT_TIMEOUT", "5")
    monkeypatch.setenv("WORKERLEDGER_AUTH_TOKENS", "[]")  # stops serve after the warning
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "WORKERLEDGER_HEARTBEAT_TIMEOUT is not a setting: did you mean " in err
    assert "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS" in err


def test_list_settings_take_the_comma_form_and_a_json_list(monkeypatch):
    for value in (
        "modifiers,selections",
        " modifiers , selections, ",
        '["modifiers", "selections"]',
    ):
        monkeypatch.setenv("WORKERLEDGER_ALLOWED_CATEGORIES", value)
        assert Settings().allowed_categories == ("modifiers", "selections"), value


@pytest.mark.parametrize("debug", [False, True])
def test_the_entry_point_prints_no_token_and_no_traceback_for_a_bad_database(tmp_path, debug):
    # Given a bad DATABASE_URL and no AUTH_TOKENS (serve would make an admin token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
    env["WORKERLEDGER_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    # When `workerledger serve` starts
    command = [sys.executable, "-m", "workerledger", "serve", "--port", "0"]
    result = subprocess.run(
        command + ["--debug"] * debug, env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    # Then it exits 2 with the reason naming the variable, before printing a token
    assert result.returncode == 2 and result.stdout == ""
    assert "workerledger: error: WORKERLEDGER_DATABASE_URL: cannot connect" in result.stderr
    assert ("Traceback" in result.stderr) is debug
    if not debug:
        assert len(result.stderr.strip().splitlines()) == 1


def test_every_setting_is_read_from_its_variable_and_shown_when_changed(monkeypatch):
    samples = {
        "database_url": "sqlite:///other.db",
        "auth_tokens": TOKENS,
        "allowed_categories": "x,y",
        "allowed_provider_categories": "filesystem,frames",
        "socketio_manager_url": "redis://:pw@127.0.0.1:6379/0",
        "socketio_channel": "other",
        "socketio_skip_empty_rooms": "false",
        "metrics_require_token": "true",
        "rest_fast_lane": "false",
    }
    fields = {n: f for n, f in Settings.model_fields.items() if n != "admin_token_file"}
    for name, field in fields.items():
        default = field.get_default(call_default_factory=True)
        value = samples[name] if name in samples else str(default * 2)
        monkeypatch.setenv(f"WORKERLEDGER_{name.upper()}", value)
    settings = Settings()
    changed = ", ".join(changed_settings(settings))
    for name, field in fields.items():
        assert getattr(settings, name) != field.get_default(call_default_factory=True), name
        assert name == "database_url" or f"{name.upper()}=" in changed, name
    assert "pw" not in changed and "tok-alice" not in changed  # secrets never shown
    # and the one left out above, without AUTH_TOKENS
    monkeypatch.delenv("WORKERLEDGER_AUTH_TOKENS")
    monkeypatch.setenv("WORKERLEDGER_ADMIN_TOKEN_FILE", "admin.token")
    assert Settings().admin_token_file == Path("admin.token")


def test_serve_takes_host_port_and_log_level_from_flags_then_variables():
    def chosen(argv: list[str], env: dict[str, str]) -> tuple[str, int, str]:
        options = serve_options(build_parser().parse_args(argv), env)
        return options.host, options.port, options.log_level

    env = {"WORKERLEDGER_HOST": "0.0.0.0", "WORKERLEDGER_PORT": "9000",
           "WORKERLEDGER_LOG_LEVEL": "INFO"}  # fmt: skip
    assert chosen(["serve"], env) == ("0.0.0.0", 9000, "info")
    assert chosen(["serve"], {}) == ("127.0.0.1", 8000, "warning")
    flags = ["serve", "--host", "::1", "--port", "0", "--log-level", "debug"]
    assert chosen(flags, env) == ("::1", 0, "debug")
