"""Every gateway error answer: one HTTP status, kind and ``retry_safe`` per error
(``docs/gateway.md`` section 4).

Pure: no IO. :func:`error_body` is the one translation from shoal's error
hierarchy (``shoal/errors.py``) to an answer; :class:`GatewayError` is what
the gateway raises itself (a bad option, a wrong token, a body too large).

Rules:

- Rule 1: ``retry_safe`` is true only when the request provably did not
  start (G3): it is the error's ``not_started``, except for the gateway's own
  refusals, which happen before anything is sent (always true).
- Rule 2: the body names the failing member (``member``, typed as in
  section 2) and a crash's exception class (``remote_type``) when known.
- Rule 3: an exception outside the hierarchy is a fault of the gateway:
  ``500 internal``, not retry-safe, its message kept out of the body (it is
  logged by the caller of :func:`error_body`).
"""

from __future__ import annotations

from typing import Any, Final

from shoal.errors import (
    BadRequest,
    CallError,
    CallTimeout,
    NodeDown,
    NoMembers,
    NoSuchProcess,
    Overloaded,
    ProcessExited,
    ShoalError,
    StoreError,
    TargetError,
    UsageError,
)
from shoal.pid import Pid

__all__ = ["STATUS_OF_KIND", "GatewayError", "error_body"]

STATUS_OF_KIND: Final[dict[str, int]] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "no_members": 404,
    "noproc": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "unsupported_media_type": 415,
    "rejected": 422,
    "crash": 502,
    "exited": 502,
    "unencodable": 502,
    "internal": 500,
    "overloaded": 503,
    "nodedown": 503,
    "unavailable": 503,
    "timeout": 504,
}
"""Each error kind's HTTP status (the table of ``docs/gateway.md`` section 4)."""


class GatewayError(ShoalError):
    """An error answer the gateway gives itself.

    Attributes:
        status: the HTTP status.
        kind: the error kind (a key of :data:`STATUS_OF_KIND`).
        message: what went wrong, for a person.
        retry_safe: the request provably did not start.
        remote_type, member: as in the body, when known.
    """

    def __init__(self, status: int, kind: str, message: str, retry_safe: bool = True, *,
                 remote_type: str | None = None, member: Pid | None = None) -> None:
        self.status = status
        self.kind = kind
        self.message = message
        self.retry_safe = retry_safe
        self.remote_type = remote_type
        self.member = member
        super().__init__(message)


def _pid(pid: Any) -> Any:
    return {"$pid": [pid.node, pid.creation, pid.serial]} if type(pid) is Pid else None


def _classify(exc: BaseException) -> GatewayError:
    if isinstance(exc, GatewayError):
        return exc
    text = str(exc)
    if isinstance(exc, UsageError):
        return GatewayError(400, "bad_request", text, True)
    if isinstance(exc, NoMembers):
        return GatewayError(404, "no_members", text, True)
    if isinstance(exc, NoSuchProcess):
        return GatewayError(404, "noproc", text, True,
                            member=exc.pid if type(exc.pid) is Pid else None)
    if isinstance(exc, BadRequest):
        return GatewayError(422, "rejected", text, False)
    if isinstance(exc, CallError):
        return GatewayError(502, "crash", f"{exc.remote_type}: {exc.remote_message}", False,
                            remote_type=exc.remote_type, member=exc.pid)
    if isinstance(exc, ProcessExited):
        return GatewayError(502, "exited", text, False, member=exc.pid)
    if isinstance(exc, Overloaded):
        return GatewayError(503, "overloaded", text, True, member=exc.pid)
    if isinstance(exc, (NodeDown, TargetError)):
        return GatewayError(503, "nodedown", text, exc.not_started)
    if isinstance(exc, CallTimeout):
        return GatewayError(504, "timeout", text, False)
    if isinstance(exc, StoreError):
        return GatewayError(503, "unavailable", text, True)
    if isinstance(exc, ShoalError):  # a callee's other failure (a child that failed to start)
        return GatewayError(502, "crash", text, exc.not_started,
                            remote_type=f"{type(exc).__module__}.{type(exc).__qualname__}")
    return GatewayError(500, "internal", "the gateway failed handling the request "
                                         "(see the node's log)", False)


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and ``{"error": {...}}`` body answering ``exc`` (Rules 1-3)."""
    err = _classify(exc)
    body: dict[str, Any] = {"kind": err.kind, "message": err.message,
                            "retry_safe": err.retry_safe}
    if err.remote_type is not None:
        body["remote_type"] = err.remote_type
    if err.member is not None:
        body["member"] = _pid(err.member)
    return err.status, {"error": body}
