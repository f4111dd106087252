"""The only package that talks to NATS: connection, provisioning, subjects, the fenced
append, leases and the :class:`SessionClient` that the CLI, the edge and other services use.
"""

from bus import commit, direct, leases, subjects
from bus.client import Page, Receipt, Scope, SessionClient
from bus.connection import Bus, connect, open_connection, with_retry
from bus.credentials import Credentials
from bus.errors import (
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
    ToolCallNotWaitingError,
    TransientError,
    UnknownAgentError,
)
from bus.follow import Follower
from bus.permissions import Role
from bus.pull import PullLoop
from bus.settings import Settings
from bus.state import load_state

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
