"""An httpx transport that lets the server handle a request and then loses its answer.

`LosingTransport` forwards every request to the real server through a real
`httpx.HTTPTransport`, reads the whole response (the server has handled the request
and sent its answer), and then, when a `Rule` says so, raises a transport error
instead of returning it: exactly what a client sees when a connection dies after
COMMIT, a proxy resets, or a client timeout fires just too early.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

Occurrences = Callable[[int], bool]  # 1-based occurrence of a matching request -> lose it?


def first(n: int) -> bool:
    return n == 1


def every_other(n: int) -> bool:
    return n % 2 == 1


@dataclass
class Rule:
    """Which answers to lose: method, a regex searched in the URL path, optionally
    regexes searched in the request body and in the answer (e.g. only claims that got
    a task), and which occurrences of matching exchanges."""

    method: str
    path: str
    body: str | None = None
    answer: str | None = None
    occurrences: Occurrences = first
    error: type[httpx.TransportError] = httpx.ReadError
    seen: int = 0
    lost: int = 0

    def matches(self, request: httpx.Request, answer: httpx.Response) -> bool:
        if request.method != self.method or not re.search(self.path, request.url.path):
            return False
        if self.body is not None and not re.search(self.body, request.content.decode()):
            return False
        return self.answer is None or re.search(self.answer, answer.text) is not None


@dataclass(frozen=True)
class Exchange:
    """One request as the transport saw it: its answer, and whether that was lost."""

    method: str
    path: str
    status: int
    replayed: bool
    lost: bool


@dataclass
class LosingTransport(httpx.BaseTransport):
    rules: list[Rule]
    inner: httpx.BaseTransport = field(default_factory=httpx.HTTPTransport)
    exchanges: list[Exchange] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        try:
            response.read()  # the whole answer arrived: the server is done with it
        finally:
            response.close()
        lose = self._decide(request, response)
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        with self._lock:
            self.exchanges.append(
                Exchange(
                    request.method,
                    request.url.path,
                    response.status_code,
                    replayed,
                    lose is not None,
                )
            )
        if lose is not None:
            raise lose("answer lost after the server handled it (fault injected)", request=request)
        return response

    def _decide(
        self, request: httpx.Request, response: httpx.Response
    ) -> type[httpx.TransportError] | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(request, response):
                    rule.seen += 1
                    if rule.occurrences(rule.seen):
                        rule.lost += 1
                        return rule.error
        return None

    def close(self) -> None:
        self.inner.close()

    def count(self, method: str, path: str, *, status: int | None = None) -> int:
        """How many exchanges had this method and a path matching the regex `path`."""
        with self._lock:
            return sum(
                1
                for x in self.exchanges
                if x.method == method
                and re.search(path, x.path)
                and (status is None or x.status == status)
            )
