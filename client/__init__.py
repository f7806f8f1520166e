"""The worker client SDK: `JobManager` registers jobs and providers, claims and runs
tasks, serves provider reads, heartbeats, rides out reconnects and leaves cleanly
(`with JobManager(...) as m:`)."""

from .api import ApiManager, TokenApi
from .errors import (
    ClientError,
    NotRegisteredError,
    ServerError,
    ServerUnavailableError,
    StaleAttemptError,
    TaskCancelledError,
    WorkerGoneError,
)
from .manager import JobManager
from .models import Category, ClaimedTask, Extension, TaskInfo
from .providers import Provider
from .realtime import AckError

__all__ = [
    "AckError",
    "ApiManager",
    "Category",
    "ClaimedTask",
    "ClientError",
    "Extension",
    "JobManager",
    "NotRegisteredError",
    "Provider",
    "ServerError",
    "ServerUnavailableError",
    "StaleAttemptError",
    "TaskCancelledError",
    "TaskInfo",
    "TokenApi",
    "WorkerGoneError",
]
