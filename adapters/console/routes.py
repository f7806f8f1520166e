"""`create_console_router(runtime)`: the operator console, served by the host.

Mount it with `app.include_router(create_console_router(runtime))` next to the REST
router, on every host (each reads its own view, which tails the shared log):

- `GET /console`, `/console/workers/{id}`, `/console/tasks/{id}`: the page (one HTML
  shell; the script draws the overview, a worker's timeline or a task's attempts).
  The shell and its static files hold no data and need no token.
- `GET /console/static/{file}`: its JavaScript and CSS (package data, no build step,
  nothing from a CDN).
- `GET /console/api/overview`: workers, jobs and recent tasks, filtered and paginated on
  the server (bearer token, as on every REST route). Timelines come from the REST
  history routes (`/v1/joblib/workers/{id}/history?at=`, `/tasks/{id}/history`).

The console's routes are not in the OpenAPI document: they are the page's, not a wire.
"""

import hashlib
import html
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from workerledger.core import Actor, TaskStatus

from ..rest.context import RestContext
from ..rest.tasks import PREFIX as REST_PREFIX
from .overview import WORKER_STATES, OverviewCache, OverviewQuery, overview

if TYPE_CHECKING:  # the runtime module builds the whole host: keep this import light
    from ..runtime import LedgerRuntime

SHELL = "shell.html"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PageSize = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def static_files() -> dict[str, StaticFile]:
    """The console's scripts and stylesheets, read once from the package."""
    files: dict[str, StaticFile] = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        media_type = MEDIA_TYPES.get("." + entry.name.rsplit(".", 1)[-1])
        if media_type is not None and entry.is_file():
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            files[entry.name] = StaticFile(body, media_type, etag)
    return files


def create_console_router(
    runtime: "LedgerRuntime", *, prefix: str = "/console", rest_prefix: str = REST_PREFIX
) -> APIRouter:
    """The console's router: the page under `prefix`, its data under `prefix/api`.

    `rest_prefix` is where the host mounted `create_router(runtime)` (the page reads
    timelines from its history routes). Tokens are the runtime's authenticator's.
    """
    ctx = RestContext(
        ledger=runtime.ledger,
        authenticate=runtime.authenticate,
        clock=runtime.clock,
        limits=runtime.limits,
    )
    CurrentActor = Annotated[Actor, Depends(ctx.actor_dependency())]
    router = APIRouter(route_class=ctx.route_class, include_in_schema=False)
    files = static_files()
    shell = resources.files(__package__).joinpath("static", SHELL).read_text("utf-8")
    etags = hashlib.sha256(b"".join(f.etag.encode() for f in files.values())).hexdigest()[:12]
    limits, grace = runtime.limits, runtime.policies.disconnect_grace_seconds
    cache = OverviewCache()

    def page(request: Request, depth: int) -> HTMLResponse:
        """The shell for a page `depth` path segments below the console's own path."""
        path = request.scope["path"]  # the full path (ASGI: it includes root_path)
        values = {
            "base": path.rsplit("/", depth)[0] if depth else path,
            "rest": request.scope.get("root_path", "") + rest_prefix,
            "version": etags,
        }
        body = shell
        for key, value in values.items():
            body = body.replace("{{" + key + "}}", html.escape(value, quote=True))
        return HTMLResponse(body, headers=PAGE_HEADERS)

    @router.get(prefix)
    async def overview_page(request: Request) -> HTMLResponse:
        return page(request, 0)

    @router.get(prefix + "/workers/{worker_id}")
    async def worker_page(request: Request, worker_id: str) -> HTMLResponse:
        return page(request, 2)

    @router.get(prefix + "/tasks/{task_id}")
    async def task_page(request: Request, task_id: str) -> HTMLResponse:
        return page(request, 2)

    @router.get(prefix + "/static/{name}")
    async def static(request: Request, name: str) -> Response:
        found = files.get(name)
        if found is None:
            return Response(status_code=404)
        headers = {
            "ETag": found.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    states = "^(" + "|".join(WORKER_STATES) + ")$"

    @router.get(prefix + "/api/overview")
    async def get_overview(
        actor: CurrentActor,
        room: Annotated[str | None, Query(max_length=limits.max_room_id_length)] = None,
        user: Annotated[str | None, Query(max_length=limits.max_key_length)] = None,
        state: Annotated[str, Query(pattern=states)] = "all",
        status: TaskStatus | None = None,
        limit: PageSize = 100,
        offset: Offset = 0,
        job_limit: PageSize = 100,
        job_offset: Offset = 0,
        task_limit: PageSize = 50,
        task_offset: Offset = 0,
        since: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        """Workers (with state, grace deadline, reason, jobs, rooms, held tasks, last
        heartbeat), jobs (queue depth, workers) and recent tasks; `changed: false` and
        nothing else while the view is still the one `since` names."""
        query = OverviewQuery(
            room=room or None,
            user=user or None,
            state=state,
            status=status,
            limit=limit,
            offset=offset,
            job_limit=job_limit,
            job_offset=job_offset,
            task_limit=task_limit,
            task_offset=task_offset,
            since=since,
        )
        result = await ctx.ledger.read(
            lambda view: overview(view, query, ctx.clock(), grace, cache)
        )
        return Response(
            result.model_dump_json(),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return router
