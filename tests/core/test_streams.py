"""Stream names (core/streams.py): built, parsed, and the stored text of every event kind.

The stored text is the store's key (uuid5 of it is the stream id), so these examples
pin the format: a change here would orphan every stored stream.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from workerledger.core import (
    JobWorkerLinked,
    Stream,
    StreamKind,
    TaskSubmitted,
    WorkerRegistered,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stream", "text"),
    [
        (Stream.worker("w1"), "worker:w1"),
        (Stream.job("room1:modifiers:relax"), "job:room1:modifiers:relax"),
        (Stream.task("t1"), "task:t1"),
    ],
)
def test_a_stream_has_one_stored_text_and_parses_back_from_it(stream: Stream, text: str) -> None:
    assert stream.text == str(stream) == f"{stream}" == text
    assert Stream.parse(text) == stream


def test_a_job_key_keeps_its_colons() -> None:
    stream = Stream.parse("job:@global:modifiers:a:b")
    assert (stream.kind, stream.key) == (StreamKind.JOB, "@global:modifiers:a:b")


def test_kind_and_key_name_the_entity() -> None:
    stream = Stream.task("t1")
    assert stream.kind is StreamKind.TASK and stream.kind == "task" and stream.key == "t1"
    assert Stream.worker("x") != Stream.task("x")
    assert len({Stream.worker("w1"), Stream.parse("worker:w1")}) == 1  # hashable, by value


@pytest.mark.parametrize("text", ["", "worker", "worker:", "room:r1", "jobs:a:b:c", ":w1"])
def test_text_that_is_not_a_stream_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="stream"):
        Stream.parse(text)


def test_every_event_kind_names_its_stream_as_before() -> None:
    """`Event.stream` is what the store keys on; `Event.subject` is the same as a value."""
    registered = WorkerRegistered(worker_id="w1", user="alice", at=T0)
    linked = JobWorkerLinked(job_name="room1:modifiers:relax", worker_id="w1", at=T0)
    submitted = TaskSubmitted(
        task_id="t1", job_name="room1:modifiers:relax", room_id="room1", by="bob", at=T0
    )
    assert [e.stream for e in (registered, linked, submitted)] == [
        "worker:w1",
        "job:room1:modifiers:relax",
        "task:t1",
    ]
    assert [e.subject for e in (registered, linked, submitted)] == [
        Stream.worker("w1"),
        Stream.job("room1:modifiers:relax"),
        Stream.task("t1"),
    ]
