"""Which of zndraw-joblib 0.1.7's tests can be pointed at another server, and why not.

Pure stdlib: the adapter conftest imports it in the peer's virtualenv (to deselect the
tests that cannot run against workerledger) and the harness's own test imports it in
workerledger's. A test is portable when its module is not listed in `NOT_PORTABLE`
and it uses at least one fixture that reaches the server (`SERVER_FIXTURES`, also
through the module's own fixtures, since pytest reports the whole fixture closure).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NOT_PORTABLE: dict[str, str] = {
    "test_dependencies.py": "the peer's own FastAPI dependency functions, called directly",
    "test_events.py": "the peer's own Socket.IO event models (no server)",
    "test_exceptions.py": "the peer's own ProblemException classes (no server)",
    "test_init.py": "the peer package's exports and version",
    "test_models.py": "the peer's own SQLModel tables",
    "test_registry.py": "the peer's taskiq InternalRegistry, writing the peer's tables",
    "test_schemas.py": "the peer's own pydantic schemas (no server)",
    "test_settings.py": "the peer's JobLibSettings class and its environment variables",
    "test_sweeper.py": "the peer's sweeper functions on rows written into the peer's tables",
}

SERVER_FIXTURES: frozenset[str] = frozenset(
    {
        "app",
        "client",
        "seeded_client",
        "client_factory",
        "threadsafe_client",
        "async_client",
        "api",
    }
)

TRANSLATED_FIXTURES: dict[str, str] = {
    "threadsafe_engine": "deletes worker/provider rows of the peer's tables; the adapter "
    "turns `DELETE FROM worker|provider WHERE id = ?` into a superuser REST DELETE",
}

NO_SERVER = "uses no server fixture: exercises the peer's client classes or helpers only"


@dataclass(frozen=True)
class Verdict:
    portable: bool
    reason: str  # why not portable, or how a portable test reaches workerledger


def module_of(nodeid: str) -> str:
    """`tests/test_x.py::test_y[a]` -> `test_x.py`."""
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def classify(nodeid: str, fixturenames: Iterable[str]) -> Verdict:
    """The verdict for one collected test, from its module and its fixture closure."""
    module = module_of(nodeid)
    if module in NOT_PORTABLE:
        return Verdict(False, NOT_PORTABLE[module])
    names = set(fixturenames)
    if not names & SERVER_FIXTURES:
        return Verdict(False, NO_SERVER)
    translated = sorted(names & TRANSLATED_FIXTURES.keys())
    if translated:
        return Verdict(True, "; ".join(TRANSLATED_FIXTURES[n] for n in translated))
    return Verdict(True, "through the fixtures")
