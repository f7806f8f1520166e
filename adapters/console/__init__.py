"""The operator console: a live page of every worker's life, served by the host.

`create_console_router(runtime)` serves the page (plain JavaScript, CSS and inline SVG
from `static/`, no build step) and the JSON it reads (`/console/api/...`, bearer token).
"""

from .routes import create_console_router

__all__ = ["create_console_router"]
