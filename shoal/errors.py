"""The one error hierarchy of shoal.

Every error shoal raises is a :class:`ShoalError`. Below it, errors are split
by whose fault they are, because that decides what a caller should do:

- :class:`UsageError` -- the caller's: a bad argument or configuration. Fix
  the code; retrying changes nothing.
- :class:`TargetError` -- the target is gone or unreachable (no such process,
  no members, node down, protocol or authentication failure).
- :class:`CalleeError` -- the callee took the request and failed (its handler
  raised, it exited mid-call, it is overloaded, it rejected the request).
- :class:`CallTimeout` -- time: the deadline passed.
- :class:`StoreError` -- the membership store: unavailable, or a name (a
  node's, or a registered one) is already held.

Whether a failed request *provably did not start* is what makes a group call
safe to retry elsewhere (G3). Each class says so in ``not_started``; a group
call retries on another member only when it is ``True``, or when the caller
marked the request idempotent.

The root and the caller's errors (:class:`ShoalError`, :class:`UsageError`,
:class:`BadArgument`, :class:`ConfigError`) are defined in
``shoal._usage_errors``, below ``shoal.pid`` (which raises
:class:`BadArgument` for a malformed pid), and are re-exported here: this
module is where every error is imported from, and each names it as its
module.
"""

from __future__ import annotations

from typing import Any

from shoal._usage_errors import BadArgument, ConfigError, ShoalError, UsageError, short_repr
from shoal.pid import Global, Pid, Reason

__all__ = [
    "AuthenticationFailed",
    "BadArgument",
    "BadRequest",
    "CallError",
    "CallTimeout",
    "CalleeError",
    "ChildError",
    "ChildExists",
    "ChildRunning",
    "ChildStartFailed",
    "ConfigError",
    "KeyExists",
    "NameInUse",
    "NoMembers",
    "NoSuchChild",
    "NoSuchProcess",
    "NodeDown",
    "Overloaded",
    "ProcessExited",
    "ProtocolError",
    "SessionEnded",
    "ShoalError",
    "StoreError",
    "StoreUnavailable",
    "TargetError",
    "UsageError",
]


# --- the target is gone or unreachable --------------------------------------


class TargetError(ShoalError):
    """The target of a request could not be reached or does not exist."""


class NoSuchProcess(TargetError):
    """The target process is not alive (it exited, or its pid belongs to an
    earlier incarnation of its node). Its owner said so, so the request
    provably did not start: a group call retries on another member.

    Also raised, before anything is sent, for a registered name that names
    no process: a ``str`` (a local name) or a :class:`~shoal.Global` that is
    not registered (Erlang's ``noproc``).

    Attributes:
        pid: the dead pid, or the name that names no process.
    """

    not_started = True

    def __init__(self, pid: Pid | str | Global) -> None:
        self.pid = pid
        if isinstance(pid, Global):
            text = f"no process registered globally as {pid.name!r}"
        elif isinstance(pid, str):
            text = f"no process registered as {pid!r} on this node"
        else:
            text = f"no such process {pid}"
        super().__init__(text)


class NoMembers(TargetError):
    """A group has no live, routable member that could take the request.

    Retry later if members are expected to come back. When members were
    tried, the message says why they failed (each distinct reason once, for
    instance "authentication refused by node 'a' ...": then no retry helps
    until the configuration is fixed).

    Attributes:
        scope, group: the group that was asked.
        tried: how many members were tried and failed before giving up.
        reasons: why they failed, each distinct message once, in order.
    """

    not_started = True

    def __init__(self, scope: str, group: Any, tried: int = 0,
                 reasons: tuple[str, ...] = ()) -> None:
        self.scope = scope
        self.group = group
        self.tried = tried
        self.reasons = reasons
        where = f"group {short_repr(group)} in scope {scope!r}"
        extra = f" ({tried} tried and failed)" if tried else ""
        if reasons:
            shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more"
                                               if len(reasons) > 3 else "")
            extra += f": {shown}"
        super().__init__(f"no live members in {where}{extra}")


class NodeDown(TargetError):
    """The node hosting the target is known down, the connection to it
    broke, or it refused this node. ``not_started`` tells whether the request
    was sent before the connection failed (unknown delivery) or not at all.

    ``refused`` is True when the node is up but refused this node's
    authentication: the cluster secrets differ, it belongs to another
    cluster, or their TLS settings do not match (a CA one side does not
    trust, TLS on one side only); the message says which. Nothing was sent,
    and retrying cannot help until the configuration is fixed.

    Attributes:
        node: the node's name.
        refused: the node refused this node's authentication.
    """

    def __init__(self, node: str, detail: str = "", *, not_started: bool = True,
                 refused: bool = False) -> None:
        self.node = node
        self.detail = detail
        self.refused = refused
        self.not_started = not_started  # type: ignore[misc]
        if refused:
            text = detail or f"node {node!r} refused this node's authentication"
        else:
            text = f"node {node!r} is down" + (f": {detail}" if detail else "")
        super().__init__(text)


class ProtocolError(TargetError):
    """A peer sent bytes that break the wire protocol (malformed frame,
    unknown message type, oversized frame). The connection is closed; the
    node keeps serving others."""


class AuthenticationFailed(ProtocolError):
    """A peer failed the handshake: it does not know the cluster secret, or
    belongs to another cluster, or speaks an unsupported protocol version."""


# --- the callee took it and failed ----------------------------------------


class CalleeError(ShoalError):
    """The callee received the request and could not complete it."""


class CallError(CalleeError):
    """The callee's handler raised; the callee crashed with that exception
    (let it crash). Not retried automatically: the handler may have had
    effects.

    Attributes:
        pid: the callee.
        remote_type: qualified class name of the exception, e.g. ``"builtins.KeyError"``.
        remote_message: ``str()`` of the exception.
        remote_traceback: the traceback text as the callee's node formatted it.
    """

    def __init__(
        self, pid: Pid, remote_type: str, remote_message: str, remote_traceback: str = ""
    ) -> None:
        self.pid = pid
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        super().__init__(f"{pid} raised {remote_type}: {remote_message}")

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += "\n--- remote traceback ---\n" + self.remote_traceback.rstrip()
        return text


class ProcessExited(CalleeError):
    """The callee exited while handling this request (killed, stopped, its
    node shut down). Delivery is unknown, so it is not retried unless the
    request is marked idempotent.

    Attributes:
        pid: the callee.
        reason: its exit reason.
    """

    def __init__(self, pid: Pid, reason: Reason) -> None:
        self.pid = pid
        self.reason = reason
        super().__init__(f"{pid} exited during the call: {reason}")


class Overloaded(CalleeError):
    """The callee cannot take the request now: its mailbox is full, or its
    node does not read what this node already sent it (more than the
    connection's ``max_unsent`` bytes wait). The request was rejected
    without being queued, so it provably did not start. Retry elsewhere or
    later.

    Attributes:
        pid: the callee.
        limit: the bound that was reached: the mailbox's (messages), or the
            connection's (bytes).
        detail: what was full, in words.
    """

    not_started = True

    def __init__(self, pid: Pid, limit: int, detail: str = "") -> None:
        self.pid = pid
        self.limit = limit
        self.detail = detail or f"mailbox full ({limit} messages)"
        super().__init__(f"{pid} is overloaded: {self.detail}")


class BadRequest(CalleeError):
    """Raised by a handler to reject one request without crashing.

    ``handle_call`` may raise ``BadRequest(request)``: the caller gets this
    error (rebuilt on the caller's side, also across nodes) and the process
    keeps running. Not retryable: the request itself is wrong.
    """

    def __init__(self, request: Any = None, detail: str = "") -> None:
        self.request = request
        self.detail = detail
        super().__init__(detail or f"bad request {short_repr(request)}")


# --- supervisors ----------------------------------------------------------


class ChildError(UsageError):
    """A supervisor refused an operation on one of its children because of
    the child's state: the caller's mistake (an unknown id, a child that
    still runs, an operation ``simple_one_for_one`` does not offer, as OTP's
    ``{error, ...}`` answers). Nothing changed; retrying the same request
    changes nothing.

    Attributes:
        supervisor: the supervisor's pid.
        child: the child's id (or pid) the request named.
        problem: OTP's word for it: ``"not_found"``, ``"running"``,
            ``"already_present"``, ``"already_started"``,
            ``"simple_one_for_one"``; or ``"bad_spec"`` (``start_child``
            given arguments where a spec is needed, or the reverse).
    """

    def __init__(self, supervisor: Pid, child: Any, problem: str, detail: str = "") -> None:
        self.supervisor = supervisor
        self.child = child
        self.problem = problem
        super().__init__(detail or f"supervisor {supervisor}: child {short_repr(child)}: "
                                   f"{problem}")


class NoSuchChild(ChildError):
    """The supervisor has no child with that id (or pid)."""


class ChildRunning(ChildError):
    """The child is running: stop it first (``terminate_child``) to restart
    or delete it."""


class ChildExists(ChildError):
    """``start_child`` named an id the supervisor already has: ``problem``
    is ``"already_started"`` (it runs; ``pid`` is its pid) or
    ``"already_present"`` (its spec is kept, not running: use
    ``restart_child``)."""

    def __init__(self, supervisor: Pid, child: Any, problem: str,
                 pid: Pid | None = None) -> None:
        self.pid = pid
        super().__init__(supervisor, child, problem)


class ChildStartFailed(CalleeError):
    """A supervisor could not start a child: its ``init`` raised or
    stopped. For ``start_child`` the spec is not kept; for
    ``restart_child`` it is, not running. Raised by a supervisor's own
    ``init`` too (``spawn`` of the supervisor then fails), after it stopped
    the children it had started.

    Attributes:
        supervisor: the supervisor's pid.
        child: the child's id.
        detail: what the start failed with (the error's type and message).
    """

    def __init__(self, supervisor: Pid, child: Any, detail: str) -> None:
        self.supervisor = supervisor
        self.child = child
        self.detail = detail
        super().__init__(f"supervisor {supervisor}: child {short_repr(child)} failed to "
                         f"start: {detail}")


# --- time -----------------------------------------------------------------


class CallTimeout(ShoalError, TimeoutError):
    """The deadline passed before a reply came. A late reply is discarded.
    Delivery is unknown: retry only if the request is idempotent.

    Attributes:
        target: the pid or group that was called.
        timeout: the deadline in seconds.
    """

    def __init__(self, target: Any, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        super().__init__(f"call to {target} timed out after {timeout:g}s")


# --- the store --------------------------------------------------------------


class StoreError(ShoalError):
    """The membership store failed or refused an operation."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or used (file unwritable, disk full,
    server down). Retry with backoff; membership already cached keeps
    routing calls meanwhile."""


class SessionEnded(StoreError):
    """The store session this write was made under has ended (expired,
    revoked, closed). The node opens a new session and rewrites what it
    owns; the write itself did not happen."""


class NameInUse(StoreError):
    """A name is already held: a node name by a live node of the cluster
    (pick another name, or stop that node first), or a registered name by a
    live process (``node.register``: on this node; ``node.register_global``:
    in the store, where the first registration wins a race). Retrying helps
    only once the holder is gone.

    Attributes:
        name: the name asked for.
        holder: who holds it, as text (a pid for a registered name; may be
            empty for a node name).
        kind: ``"node name"``, ``"registered name"`` or ``"global name"``.
    """

    def __init__(self, name: str, holder: str = "", *, kind: str = "node name") -> None:
        self.name = name
        self.holder = holder
        self.kind = kind
        if kind == "node name":
            text = f"node name {name!r} is held by a live node" + (
                f" ({holder})" if holder else "")
        else:
            text = f"{kind} {name!r} is held by {holder or 'another process'}"
        super().__init__(text)


class KeyExists(StoreError):
    """A :class:`~shoal.store.Create` found its key already present, so the
    whole batch was not applied (the store's create-if-absent: the first
    create of a key wins). Retrying helps only once the key is gone.

    Attributes:
        key: the key that exists.
        value: its value when the batch was refused.
        session: the id of the session that owns it.
    """

    def __init__(self, key: str, value: bytes, session: str) -> None:
        self.key = key
        self.value = value
        self.session = session
        super().__init__(f"key {key!r} already exists (owned by session {session})")
