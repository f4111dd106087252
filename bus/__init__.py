"""The only package that talks to NATS: connection, provisioning, subjects, the fenced
append, leases and the :class:`SessionClient` that the CLI, the edge and other services use.
"""

from praxis.bus import commit, direct, leases, subjects
from praxis.bus.client import Page, Receipt, Scope, SessionClient
from praxis.bus.connection import Bus, connect, open_connection, with_retry
from praxis.bus.credentials import Credentials
from praxis.bus.errors import (
    AlreadyReplayedError,
    BusError,
    CommandDeadLetteredError,
    CommandIdReusedError,
    CommandTimeoutError,
    DeadLetterNotFoundError,
    FenceRejectedError,
    IllegalTransitionError,
    InvalidCursorError,
    InvalidIdError,
    MessageTooLargeError,
    NotConnectedError,
    ProvisioningError,
    ProvisioningMismatchError,
    PublishError,
    QuotaExceededError,
    RefusalError,
    SessionExistsError,
    SessionNotFoundError,
    StreamEndedError,
    ToolCallNotWaitingError,
    TransientError,
    UnknownAgentError,
)
from praxis.bus.follow import Follower
from praxis.bus.permissions import Role
from praxis.bus.pull import PullLoop
from praxis.bus.settings import Settings
from praxis.bus.state import load_state

__all__ = [
    "AlreadyReplayedError",
    "Bus",
    "BusError",
    "CommandDeadLetteredError",
    "CommandIdReusedError",
    "CommandTimeoutError",
    "Credentials",
    "DeadLetterNotFoundError",
    "FenceRejectedError",
    "Follower",
    "IllegalTransitionError",
    "InvalidCursorError",
    "InvalidIdError",
    "MessageTooLargeError",
    "NotConnectedError",
    "Page",
    "ProvisioningError",
    "ProvisioningMismatchError",
    "PublishError",
    "PullLoop",
    "QuotaExceededError",
    "Receipt",
    "RefusalError",
    "Role",
    "Scope",
    "SessionClient",
    "SessionExistsError",
    "SessionNotFoundError",
    "Settings",
    "StreamEndedError",
    "ToolCallNotWaitingError",
    "TransientError",
    "UnknownAgentError",
    "commit",
    "connect",
    "direct",
    "leases",
    "load_state",
    "open_connection",
    "subjects",
    "with_retry",
]
