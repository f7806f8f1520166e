"""Every sample in the README runs as pasted (issue 17). Each fenced block, and each
command of a shell block, is either run here against real hosts or listed in NOT_RUN with
the reason; a new block that is neither fails test_every_sample_is_run_or_listed, which
names its section and first line. A stale sample fails where it runs.

How samples are classified (first match wins):
- NOT_RUN (the one table of samples not run, each with its reason);
- STEPS: run by the fixture or test named there, which looks the sample up by its key;
- any other `.venv/bin/workerledger COMMAND` (not `serve`): test_cli_sample, once per
  `[--option]` variant; any other `curl`: test_curl_sample (2xx expected). So a new CLI or
  curl line needs no table entry; a new script, service or output sample needs one line.

How they run: every process starts in a fresh directory holding `.venv`, a link to this
virtualenv (a fresh clone after `make`), with no WORKERLEDGER_* variable from outside and
PYTHONUNBUFFERED=1 (so that prints arrive as they happen). The host is started with the
README's own `serve` command and serves every other sample. Scripts, services and curl
run through bash; `workerledger` commands run in this process through the console
script's entry point `workerledger.cli:main` (a fresh interpreter costs 2-3 s each), with
the command's own variable assignments, in that directory (its default database is the
host's). python blocks are written to the file the README saves them as (FILES) and run
by the README's own command for that file.

Substitutions, only for the placeholders and the example host the README uses:
  http://127.0.0.1:8000, `--port 8000`  -> the test host's URL, `--port 0`
  (the console sample's `serve`, which has no `--port`, gets `--port 0`)
  WORKER_ID -> the worker worker.py registered; TASK_ID -> the task curl submitted
  3f2a9c1e (an example id prefix) -> the first 8 characters of WORKER_ID
  2026-11-29T15:00:00Z (an example time) -> a time while that worker ran
  /home/me (in shown output) -> the directory the command ran in
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from support.readme_blocks import (
    SHELL_LANGUAGES,
    Block,
    Key,
    Sample,
    blocks,
    console_sample,
    output_mismatch,
    read_samples,
    samples,
    shell_commands,
    split_command,
    strip_comment,
    variants,
)
from support.shell_process import WAIT, ShellProcess, run

from workerledger.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = read_samples(ROOT / "README.md")
EXAMPLE_URL = "http://127.0.0.1:8000"
HOST = "Running the host"
WORKER = "Worker client"
PROVIDERS = "Providers: serving data on demand"
EMBEDDING = "Host App Integration"
TESTING = "Testing your host"

# Samples not run, each with the reason. One line per sample: Key(section, first line's start).
NOT_RUN: dict[Key, str] = {
    Key("Quick start", "make demo"): "33 s on 2 cores, over this file's budget; its parts "
    "(serve, SDK workers, a task submitted and run, history) run here one by one",
    Key("Quick start", "make test"): "the whole suite, this file included",
    Key("Deploying several hosts", "load balancer"): "a diagram, not a command",
    Key("Rolling restart", ".venv/bin/workerledger drain"): "drains the scenario's "
    "worker; tests/host/test_operator.py and tests/client/test_rolling_restart.py run drain",
    Key("Metrics and logs", "2026-"): "an output sample; tests/observability checks these lines",
    Key(TESTING, "Divergence: host diverged"): "an output sample; "
    "tests/testing/test_divergence.py produces such a report from a broken myhost.py",
}

SERVE = Key(HOST, "WORKERLEDGER_AUTH_TOKENS=")
BANNER = Key(HOST, "$ WORKERLEDGER_ADMIN_TOKEN_FILE=")
WORKER_PY = Key(WORKER, "# worker.py")
RUN_WORKER = Key(WORKER, "WORKERLEDGER_TOKEN=secret .venv/bin/python worker.py")
SUBMIT_PY = Key(WORKER, "# submit.py")
RUN_SUBMIT = Key(WORKER, "WORKERLEDGER_TOKEN=secret .venv/bin/python submit.py")
CURL_SUBMIT = Key(WORKER, "curl -s -X POST ")
CURL_WAIT = Key(WORKER, "curl -s -H 'Authorization: Bearer secret' -H 'Prefer: wait=")
PROVIDER_PY = Key(PROVIDERS, "# provider.py")
RUN_PROVIDER = Key(PROVIDERS, "WORKERLEDGER_TOKEN=secret .venv/bin/python provider.py")
CURL_READ = Key(PROVIDERS, "curl -s -H 'Authorization: Bearer secret'")
MYHOST_PY = Key(EMBEDDING, "import logging")
RUN_MYHOST = Key(EMBEDDING, ".venv/bin/uvicorn ")
TEST_MYHOST_PY = Key(TESTING, "# test_myhost.py")
RUN_TEST_MYHOST = Key(TESTING, ".venv/bin/pytest ")

# Samples run by a step of the scenario below: key -> the fixture or test that runs it.
STEPS: dict[Key, str] = {
    SERVE: "fixture host (the host of every other sample)",
    BANNER: "test_the_console_sample_prints_what_the_readme_shows",
    WORKER_PY: "fixture worked",
    RUN_WORKER: "fixture worked",
    SUBMIT_PY: "fixture worked",
    RUN_SUBMIT: "fixture worked",
    CURL_SUBMIT: "fixture worked",
    CURL_WAIT: "fixture worked",
    PROVIDER_PY: "test_the_provider_sample_answers_a_read",
    RUN_PROVIDER: "test_the_provider_sample_answers_a_read",
    CURL_READ: "test_the_provider_sample_answers_a_read",
    MYHOST_PY: "test_the_host_app_module_serves_with_the_readme_command",
    RUN_MYHOST: "test_the_host_app_module_serves_with_the_readme_command",
    TEST_MYHOST_PY: "test_the_host_test_sample_passes_against_the_host_app",
    RUN_TEST_MYHOST: "test_the_host_test_sample_passes_against_the_host_app",
}

# python blocks: the file the README saves each as.
FILES = {WORKER_PY: "worker.py", SUBMIT_PY: "submit.py", PROVIDER_PY: "provider.py",
         MYHOST_PY: "myhost.py", TEST_MYHOST_PY: "test_myhost.py"}  # fmt: skip


def listed(sample: Sample) -> list[Key]:
    return [key for key in (*NOT_RUN, *STEPS) if key.matches(sample)]


def generic_kind(sample: Sample) -> str | None:
    """The generic test that runs a shell command ("cli" or "curl"), or None."""
    if sample.block.language not in SHELL_LANGUAGES:
        return None
    try:
        argv = split_command(sample.text)[1]
    except ValueError:  # not shell syntax (an unclosed quote): unclassified, named
        return None
    if argv[:1] == [".venv/bin/workerledger"] and argv[1:2] != ["serve"]:
        return "cli"
    return "curl" if argv[:1] == ["curl"] else None


def generic(kind: str) -> list[Sample]:
    return [s for s in SAMPLES if not listed(s) and generic_kind(s) == kind]


def sample(key: Key) -> Sample:
    found = [s for s in SAMPLES if key.matches(s)]
    assert len(found) == 1, f"{key} matches {len(found)} README samples, not 1"
    return found[0]


def on_host(text: str, url: str) -> str:
    return text.replace(EXAMPLE_URL, url).replace("--port 8000", "--port 0")


def fresh_directory(factory: pytest.TempPathFactory, name: str) -> Path:
    """A directory to run samples in, with `.venv` linked to this virtualenv."""
    directory = factory.mktemp(name)
    (directory / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return directory


def shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKERLEDGER_")}
    return env | {"PYTHONUNBUFFERED": "1"}


def save(key: Key, directory: Path, url: str) -> None:
    (directory / FILES[key]).write_text(on_host(sample(key).text, url))


# -- classification -----------------------------------------------------------------


def test_every_sample_is_run_or_listed() -> None:
    assert SAMPLES, "README.md has no fenced blocks"
    unclassified = [s.where() for s in SAMPLES if not listed(s) and generic_kind(s) is None]
    assert not unclassified, (
        "README samples neither run by tests/test_readme_samples.py nor listed in its "
        "NOT_RUN table with a reason:\n  " + "\n  ".join(unclassified)
    )
    ambiguous = [f"{s.where()}: {listed(s)}" for s in SAMPLES if len(listed(s)) > 1]
    assert not ambiguous, "samples with several entries:\n  " + "\n  ".join(ambiguous)
    for key in STEPS:
        sample(key)  # exactly one sample per step
    stale = [key for key in NOT_RUN if not any(key.matches(s) for s in SAMPLES)]
    assert not stale, f"NOT_RUN entries that match no README sample: {stale}"
    assert all(reason.strip() for reason in NOT_RUN.values())
    commands = [s.text for s in SAMPLES if s.block.language in SHELL_LANGUAGES]
    for key, name in FILES.items():
        assert key in STEPS and sample(key).block.language == "python", key
        assert any(Path(name).stem in command for command in commands), (
            f"no README command runs {name} ({sample(key).where()})"
        )


def test_the_cli_samples_run_the_console_script() -> None:
    (script,) = entry_points(group="console_scripts", name="workerledger")
    assert script.value == "workerledger.cli:main"
    assert (Path(sys.prefix) / "bin" / "workerledger").exists()
    assert generic("cli"), "no workerledger command found in the README"


def test_the_parser_reads_blocks_commands_options_and_output() -> None:
    markdown = (
        "# Title\n\n## Setup\n\n```sh\nmake demo   # starts it\n# only a comment\n\n"
        "A=1 B='x # y' tool --flag \\\n  value\n```\n\n### Code\n\n  ```python\n  print(1)\n"
        "  ```\n\n```\nplain\n```\n"
    )
    found = blocks(markdown)
    assert [(b.section, b.language, b.line) for b in found] == [
        ("Setup", "sh", 5), ("Code", "python", 15), ("Code", "", 19)
    ]  # fmt: skip
    assert found[1].text == "print(1)\n"
    assert shell_commands(found[0]) == [
        (6, "make demo"), (9, "A=1 B='x # y' tool --flag \\\n  value")
    ]  # fmt: skip
    assert split_command(shell_commands(found[0])[1][1]) == (
        {"A": "1", "B": "x # y"}, ["tool", "--flag", "value"]
    )  # fmt: skip
    assert [s.first_line for s in samples(markdown)] == [
        "make demo", "A=1 B='x # y' tool --flag \\", "print(1)", "plain"
    ]  # fmt: skip
    assert strip_comment("echo '#' # c") == "echo '#'"
    assert variants("w x [--all | --status lost] [--y]") == [
        "w x", "w x --all", "w x --status lost", "w x --y", "w x --all --y"
    ]  # fmt: skip
    assert variants("w '[\"a\"]'") == ["w '[\"a\"]'"]
    block = Block("S", "console", "$ a \\\n  b\nout tok...\n", 1)
    assert console_sample(block) == ("a \\\n  b", ["out tok..."])
    assert output_mismatch(["out tok..."], ["out 4Omb"]) is None
    assert output_mismatch(["out tok..."], ["out"]) is not None
    assert output_mismatch(["out tok..."], ["out x", "more"]) is not None
    assert Key("Setup", "make").matches(samples(markdown)[0])
    assert not Key("Code", "make").matches(samples(markdown)[0])


# -- the host and the worker scenario -----------------------------------------------


@dataclass(frozen=True)
class Host:
    directory: Path
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The README's `serve` command, on port 0, in a fresh directory."""
    directory, env = fresh_directory(tmp_path_factory, "readme-host"), shell_env()
    server = ShellProcess(on_host(sample(SERVE).text, EXAMPLE_URL), directory, env)
    try:
        url = server.expect(r"^workerledger listening on (http://\S+)$").group(1)
        server.expect(r"health check: ")
        yield Host(directory, url, env)
        assert server.interrupt() == 0, server.output()  # Ctrl-C: a clean shutdown
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.kill()


@dataclass(frozen=True)
class Worked:
    worker_id: str
    task_id: str  # submitted by the curl sample
    ran_at: str  # a time while the worker ran, in the README's format
    worker_output: list[str]
    submit_output: str


@pytest.fixture(scope="module")
def worked(host: Host) -> Iterator[Worked]:
    """worker.py runs; submit.py and curl each submit a task it runs; Ctrl-C."""
    save(WORKER_PY, host.directory, host.url)
    save(SUBMIT_PY, host.directory, host.url)
    worker = ShellProcess(on_host(sample(RUN_WORKER).text, host.url), host.directory, host.env)
    try:
        worker_id = worker.expect(r"^worker (\S+) ready; Ctrl-C leaves cleanly$").group(1)
        code, submitted = run(sample(RUN_SUBMIT).text, host.directory, host.env)
        assert code == 0, submitted
        code, posted = run(on_host(sample(CURL_SUBMIT).text, host.url), host.directory, host.env)
        assert code == 0, posted
        task = json.loads(posted)
        assert task["payload"] == {"angle": 45} and task["job_name"] == "lab:modifiers:Rotate"
        wait = on_host(sample(CURL_WAIT).text, host.url).replace("TASK_ID", task["id"])
        code, waited = run(wait, host.directory, host.env)
        assert code == 0 and json.loads(waited)["status"] == "completed", waited
        ran_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        worker.expect(rf"^task {task['id']}: rotating by 45.0 \(10/10\)$")
        assert worker.interrupt() == 0, worker.output()
    finally:
        worker.kill()
    yield Worked(worker_id, task["id"], ran_at, worker.lines, submitted)


def test_the_worker_sample_runs_the_submitted_tasks_and_leaves(host: Host, worked: Worked):
    found = re.fullmatch(r"task (\S+) (\w+)\ntask \1 completed", worked.submit_output)
    assert found, worked.submit_output  # submit.py: get_task, then wait_for_task
    assert found.group(2) in ("pending", "claimed", "running", "completed")
    for task_id in (found.group(1), worked.task_id):
        steps = [line for line in worked.worker_output if line.startswith(f"task {task_id}: ")]
        assert steps == [f"task {task_id}: rotating by 45.0 ({n}/10)" for n in range(1, 11)]
    assert "Traceback" not in "\n".join(worked.worker_output), worked.worker_output
    with httpx.Client(base_url=host.url, timeout=WAIT) as http:  # Ctrl-C left cleanly
        auth = {"Authorization": "Bearer secret"}
        gone = http.get(f"/v1/joblib/workers/{worked.worker_id}", headers=auth)
        assert gone.status_code == 404, gone.text  # an ended worker is gone from the API
        history = http.get(f"/v1/joblib/workers/{worked.worker_id}/history", headers=auth)
        assert history.json()["state"]["status"] == "left", history.text


def test_the_provider_sample_answers_a_read(host: Host) -> None:
    save(PROVIDER_PY, host.directory, host.url)
    command = on_host(sample(RUN_PROVIDER).text, host.url)
    provider = ShellProcess(command, host.directory, host.env)
    try:
        provider.expect(r"^serving lab:filesystem:local; Ctrl-C leaves cleanly$")
        code, read = run(on_host(sample(CURL_READ).text, host.url), host.directory, host.env)
        assert code == 0 and json.loads(read) == {"path": "/x", "text": "hello"}, read
        assert provider.interrupt() == 0, provider.output()
    finally:
        provider.kill()
    assert "Traceback" not in provider.output(), provider.output()


# -- samples with a host of their own -------------------------------------------------


def test_the_console_sample_prints_what_the_readme_shows(tmp_path_factory) -> None:
    command, shown = console_sample(sample(BANNER).block)
    directory = fresh_directory(tmp_path_factory, "readme-banner")
    server = ShellProcess(command + " --port 0", directory, shell_env())
    try:
        url = server.expect(r"^workerledger listening on (http://\S+)$").group(1)
        printed = server.first_lines(len(shown))
        assert server.interrupt() == 0, server.output()
    finally:
        server.kill()
    expected = [line.replace(EXAMPLE_URL, url).replace("/home/me", str(directory))
                for line in shown]  # fmt: skip
    mismatch = output_mismatch(expected, printed)
    assert mismatch is None, f"{sample(BANNER).where()}\n{mismatch}"


def test_the_host_app_module_serves_with_the_readme_command(tmp_path_factory) -> None:
    directory = fresh_directory(tmp_path_factory, "readme-myhost")
    (directory / FILES[MYHOST_PY]).write_text(sample(MYHOST_PY).text)
    command = on_host(sample(RUN_MYHOST).text, EXAMPLE_URL)
    server = ShellProcess(command, directory, shell_env())
    try:
        url = server.expect(r"Uvicorn running on (http://\S+)").group(1)
        with httpx.Client(base_url=url + "/v1/joblib", timeout=WAIT) as http:
            answer = http.get("/workers", headers={"Authorization": "Bearer secret-token"})
            assert answer.status_code == 200 and answer.json()["items"] == [], answer.text
            assert http.get("/workers").status_code == 401
        assert server.interrupt() == 0, server.output()
    finally:
        server.kill()
    assert "Traceback" not in server.output(), server.output()
    assert (directory / "myhost.db").exists()  # build_app's default database


def test_the_host_test_sample_passes_against_the_host_app(tmp_path_factory) -> None:
    """myhost.py served by the README's command; test_myhost.py run by its pytest line."""
    directory = fresh_directory(tmp_path_factory, "readme-testing")
    (directory / FILES[MYHOST_PY]).write_text(sample(MYHOST_PY).text)
    server = ShellProcess(on_host(sample(RUN_MYHOST).text, EXAMPLE_URL), directory, shell_env())
    try:
        url = server.expect(r"Uvicorn running on (http://\S+)").group(1)
        save(TEST_MYHOST_PY, directory, url)
        code, output = run(sample(RUN_TEST_MYHOST).text, directory, shell_env(), timeout=120)
        assert code == 0 and "1 passed" in output, output
        assert server.interrupt() == 0, server.output()
    finally:
        server.kill()
    assert "Traceback" not in server.output(), server.output()


# -- every other workerledger and curl command --------------------------------------


def with_placeholders(text: str, worked: Worked) -> str:
    """`text` with the README's placeholders filled in."""
    values = {"WORKER_ID": worked.worker_id, "TASK_ID": worked.task_id,
              "3f2a9c1e": worked.worker_id[:8], "2026-11-29T15:00:00Z": worked.ran_at}  # fmt: skip
    for name, value in values.items():
        text = text.replace(name, value)
    return text


CLI_RUNS = [(s, variant) for s in generic("cli") for variant in variants(s.text)]


@pytest.mark.parametrize(
    ("readme", "command"), CLI_RUNS, ids=[command for _, command in CLI_RUNS]
)  # fmt: skip
def test_cli_sample(
    readme: Sample,
    command: str,
    host: Host,
    worked: Worked,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = with_placeholders(on_host(command, host.url), worked)
    env, argv = split_command(text)
    ids = (worked.worker_id, worked.worker_id[:8], worked.task_id)
    subjects = [word for flag, word in pairwise(argv[1:])
                if word in ids and not flag.startswith("-")]  # fmt: skip
    for name in list(os.environ):
        if name.upper().startswith("WORKERLEDGER_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(host.directory)
    try:
        code = main(argv[1:])
    except SystemExit as exit:  # argparse's own exits (--help)
        code = exit.code if isinstance(exit.code, int) else 1
    out, err = capsys.readouterr()
    assert code == 0, f"{readme.where()}\n`{text}` exited {code}:\n{out}{err}"
    assert out.strip(), f"{readme.where()}: `{text}` printed nothing"
    for subject in subjects:  # the worker or task a command is about is in its output
        assert subject[:8] in out, f"{readme.where()}: `{text}` does not name {subject}"


@pytest.mark.parametrize("readme", generic("curl"), ids=[s.first_line for s in generic("curl")])
def test_curl_sample(readme: Sample, host: Host, worked: Worked) -> None:
    text = with_placeholders(on_host(readme.text, host.url), worked)
    code, output = run(text + " --write-out '\\n%{http_code}'", host.directory, host.env)
    body, _, status = output.rpartition("\n")
    assert code == 0 and status.startswith("2"), f"{readme.where()}\n`{text}`: {output}"
    assert body.strip(), f"{readme.where()}: `{text}` answered nothing"
