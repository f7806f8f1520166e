"""Stream names: the one place that knows how `worker:<id>`, `job:<name>`, `task:<id>`,
`provider:<name>` look.

Every event belongs to one stream, the aggregate the store appends it to. Its text
form is stored with every event and the store derives the stream's id from it
(uuid5), so the text format is fixed forever: `<kind>:<key>`, split at the first `:`
(a job's key, `room:category:name`, contains more). Adapters build and read stream
names only through `Stream`, never by formatting or splitting strings themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StreamKind(StrEnum):
    """The kind of entity a stream folds into (the text before the first `:`)."""

    WORKER = "worker"
    JOB = "job"
    TASK = "task"
    PROVIDER = "provider"


def stream_name(kind: StreamKind, key: str) -> str:
    """The stored text of a stream, `<kind>:<key>` (cheap: events ask on every append)."""
    return kind + ":" + key


@dataclass(frozen=True, slots=True)
class Stream:
    """One event stream: an entity kind and its key (worker id, job full name, task id)."""

    kind: StreamKind
    key: str

    @classmethod
    def worker(cls, worker_id: str) -> Stream:
        return cls(StreamKind.WORKER, worker_id)

    @classmethod
    def job(cls, job_name: str) -> Stream:
        return cls(StreamKind.JOB, job_name)

    @classmethod
    def task(cls, task_id: str) -> Stream:
        return cls(StreamKind.TASK, task_id)

    @classmethod
    def provider(cls, provider_name: str) -> Stream:
        return cls(StreamKind.PROVIDER, provider_name)

    @classmethod
    def parse(cls, text: str) -> Stream:
        """The stream of a stored name; ValueError if `text` is not `<kind>:<key>`."""
        kind, sep, key = text.partition(":")
        if not sep or not key:
            raise ValueError(f"not a stream name: {text!r}")
        try:
            return cls(StreamKind(kind), key)
        except ValueError:
            raise ValueError(f"unknown stream kind {kind!r} in {text!r}") from None

    @property
    def text(self) -> str:
        """The stored form, `<kind>:<key>` (what `Event.stream` returns)."""
        return stream_name(self.kind, self.key)

    def __str__(self) -> str:
        return self.text
