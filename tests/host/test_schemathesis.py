"""schemathesis against a live host's /openapi.json: every check schemathesis has (no 5xx,
every status, content type, header and body as declared, valid input accepted, invalid
input refused, 405 with a true `Allow`, stateful links), bounded in examples and time.

Settings are in schemathesis.toml next to this file; the run is the `st` command line
against a real uvicorn on 127.0.0.1 port 0, authenticated as a superuser. A failure
prints schemathesis' own report, with a `st replay` line per case.

By default every phase runs once, MAX_EXAMPLES cases per operation and phase (the suite's
bound). `make soak` runs the long profile: WORKERLEDGER_SCHEMATHESIS_SECONDS makes the
fuzzing and stateful phases repeat until that budget is spent, and
WORKERLEDGER_SCHEMATHESIS_EXAMPLES raises the cases per operation and phase. Set
WORKERLEDGER_SCHEMATHESIS_SEED to vary the (otherwise fixed) seed.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from workerledger.host_fastapi.app import build_host

from .conftest import serve, settings

ST = str(Path(sys.executable).with_name("st"))
CONFIG = str(Path(__file__).with_name("schemathesis.toml"))
MAX_EXAMPLES = int(os.environ.get("WORKERLEDGER_SCHEMATHESIS_EXAMPLES") or 10)
BUDGET = os.environ.get("WORKERLEDGER_SCHEMATHESIS_SECONDS")  # None: each phase once


async def test_the_openapi_document_tells_the_truth(tmp_path, capsys):
    # given a host on a SQLite file
    seed = os.environ.get("WORKERLEDGER_SCHEMATHESIS_SEED", "20261203")
    host = build_host(settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'st.db'}"))
    async with serve(host.asgi) as url:
        # when schemathesis runs every phase with every check against it
        st = await asyncio.create_subprocess_exec(
            ST, "--config-file", CONFIG, "run", f"{url}/openapi.json",
            "--header", "Authorization: Bearer tok-admin",
            "--max-examples", str(MAX_EXAMPLES), *(["--max-time", BUDGET] if BUDGET else []),
            "--seed", seed, "--workers", "1", "--generation-database", "none", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(st.communicate(), float(BUDGET or 60) + 60)
    report = output.decode(errors="replace")

    # then it found no failure and no error in a run that exercised every operation
    assert st.returncode == 0, report[-8000:]
    summary = report[report.rfind("SUMMARY") :]
    tested = re.search(r"Tested: (\d+)", summary)
    generated = re.search(r"(\d+) generated", summary)
    assert tested and generated, summary
    operations = sum(len(methods) for methods in host.api.openapi()["paths"].values())
    assert int(tested.group(1)) == operations
    with capsys.disabled():  # the figure for the record
        print(f"\nschemathesis: {generated.group(1)} cases, 0 failures (seed {seed})")


def test_the_openapi_document_follows_the_settings(tmp_path):
    # given a host whose categories and limits differ from the defaults
    host = build_host(settings(tmp_path, allowed_categories=("render",), max_room_id_length=16,
                               max_job_name_length=20, max_key_length=40))  # fmt: skip
    paths = host.api.openapi()["paths"]
    register = paths["/v1/joblib/rooms/{room_id}/jobs"]["put"]

    # then the document shows them: path parameters, header and request model alike
    parameters = {p["name"]: p["schema"] for p in register["parameters"]}
    assert parameters["room_id"]["maxLength"] == 16
    assert parameters["room_id"]["pattern"] == "^(@global|@internal|[^@:/]+)$"
    assert parameters["idempotency-key"]["anyOf"][0]["maxLength"] == 40
    body = host.api.openapi()["components"]["schemas"]["JobRegisterRequest"]["properties"]
    assert body["category"]["enum"] == ["render"]
    assert body["name"]["maxLength"] == 20
    submit = paths["/v1/joblib/rooms/{room_id}/tasks/{job_name}"]["post"]
    job_name = next(p["schema"] for p in submit["parameters"] if p["name"] == "job_name")
    assert job_name["maxLength"] == 16 + 64 + 20 + 2  # room:category:name
    # and every refusal is declared, problem+json where ours, FastAPI's shape where not
    responses = register["responses"]
    assert set(responses) == {
        "200",
        "201",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "422",
        "423",
        "503",
    }
    assert set(responses["422"]["content"]) == {"application/json", "application/problem+json"}
    assert set(responses["401"]["content"]) == {"application/json"}
    assert set(responses["413"]["content"]) == {"application/problem+json"}
