"""workerledger.testing: the pure core as the oracle for a host's own property tests.

Install with the `testing` extra (`pip install workerledger[testing]`, which brings
Hypothesis). A host author points `HostStateMachine` at a running host (its URL and
tokens, `HostTarget`) with the host's policies (`ModelPolicy`) and collects its
`TestCase`; Hypothesis then drives the host through REST and Socket.IO only and checks
every step against `LifecycleModel` (the core's decide/evolve/emissions), reporting the
first divergence as a minimal failing example (`Divergence`). `strategies` holds the
valid and hostile inputs the machine uses, for a host's own tests too.
"""

from . import strategies
from .machine import Divergence, HostStateMachine, machine_settings
from .model import ZNDRAW_JOBLIB_017, JobView, LifecycleModel, ModelPolicy, Outcome, TaskView
from .protocol import Answer, HostProtocolError, HostTarget, Rest, Token, Watcher, WorkerSocket
from .strategies import HostileRequest

__all__ = [
    "ZNDRAW_JOBLIB_017",
    "Answer",
    "Divergence",
    "HostProtocolError",
    "HostStateMachine",
    "HostTarget",
    "HostileRequest",
    "JobView",
    "LifecycleModel",
    "ModelPolicy",
    "Outcome",
    "Rest",
    "TaskView",
    "Token",
    "Watcher",
    "WorkerSocket",
    "machine_settings",
    "strategies",
]
