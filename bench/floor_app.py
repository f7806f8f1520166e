"""The floor of the pinned bench: a trivial FastAPI app on the same uvicorn.

One route (any of the load generator's methods under /v1/joblib/floor) returning a small
JSON object; no body parsing, no dependencies, no auth. Served like zndraw-joblib's
bench host (`uvicorn.run`, log level warning, no access log), which is also what
`workerledger serve` does by default (no access log). Run by path with the python under
test, so that it needs only fastapi and uvicorn:

    python bench/floor_app.py --port 8123
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.api_route("/v1/joblib/floor", methods=["GET", "POST", "PATCH"])
async def floor() -> dict[str, object]:
    return {"id": "00000000-0000-0000-0000-000000000000", "status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/floor_app.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
