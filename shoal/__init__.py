"""shoal: Erlang/OTP-style processes, process groups and supervision for Python."""

from shoal.errors import *  # noqa: F403
from shoal.pid import KILLED, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, Crash, Pid, Reason

__version__ = "0.1.0"
