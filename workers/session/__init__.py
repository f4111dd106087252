"""A session on a worker: its rules as a pure policy, and the shell that runs them.

==================  ===============================================================
``policy``          the rules: state + command (or a turn's outcome) -> events and
                    the next step; no I/O (tested alone in ``tests/unit``)
``runner``          one run of one session: load, handle each input in order, release
``inbox``           the work messages that bring a session here, the linger, and when
                    they are acknowledged
``log``             the fenced append, the fold, the commit notice to followers
``effects``         what follows a commit: the ``reply_to`` answer, record, snapshot,
                    expiry timer
``turn``            the agent's part of a turn: streaming, interrupting, the journal of
                    tool calls, compaction
``handler``         one command: ask the policy, store its decision, carry it through
                    (decide again, the turn, a failure's retry, parking)
``recorder``        storing a decision's events, and what each commit sets off
``ownership``       the lease: claimed, renewed during the run, released
``shared``          what a worker's runners share: states and timers kept between
                    runs, the signals to stop lingering
==================  ===============================================================
"""

from praxis.workers.session.ownership import LeaseLostError
from praxis.workers.session.runner import SessionRunner
from praxis.workers.session.shared import RunContext

__all__ = ["LeaseLostError", "RunContext", "SessionRunner"]
