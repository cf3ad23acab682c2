"""What a connection does at a heartbeat tick: a pure decision, no IO.

Owns: the rules of the heartbeat timer of ``_peer.py`` (its rules 3 and 5)
as one function of what the connection last saw, so they are read and
tested in one place, without sockets or a loop. The connection gathers the
inputs, acts on the :class:`Tick` in its order (disconnect, else PING,
then silence) and schedules the next tick.

Rules:

1. A peer congested (``unsent >= max_unsent``) since a tick at least
   ``heartbeat_timeout`` ago is disconnected, with the bytes unsent, the
   bound and for how long in the reason; nothing else happens at that tick.
   The first congested tick only notes when it began; an uncongested one
   forgets it.
2. A PING goes out when nothing was written for ``heartbeat_interval``.
3. A peer not yet silent from which nothing was read for
   ``heartbeat_timeout`` is reported silent once. Until then the next tick
   comes at the moment silence would reach the timeout, if that is sooner
   than the interval: on the interval's ticks alone it was seen up to one
   interval late (2.5 s for the default 2 s, past G2's bound), since the
   last bytes usually arrive just after a tick's PING.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.transport._config import TransportConfig

__all__ = ["Tick", "decide"]


@dataclass(frozen=True, slots=True)
class Tick:
    """What to do at one tick.

    Attributes:
        disconnect: abort the connection with this reason (rule 1); the
            other fields are then not acted on.
        congested_since: since when the peer is congested, to keep for the
            next tick (None: not congested).
        ping: send a PING (rule 2).
        silent: report the peer silent now (rule 3).
        delay: seconds until the next tick.
    """

    disconnect: str | None
    congested_since: float | None
    ping: bool
    silent: bool
    delay: float


def decide(config: TransportConfig, now: float, *, last_read: float, last_write: float,
           unsent: int, congested_since: float | None, silent: bool) -> Tick:
    """The tick at ``now`` of a connection that last read at ``last_read``,
    last wrote at ``last_write``, holds ``unsent`` bytes not taken by the
    socket, has been congested since ``congested_since`` and was (or not)
    reported ``silent`` already (the rules above)."""
    interval, timeout = config.heartbeat_interval, config.heartbeat_timeout
    if unsent < config.max_unsent:
        congested_since = None
    elif congested_since is None:
        congested_since = now
    elif now - congested_since >= timeout:
        reason = (f"peer not reading: {unsent} bytes unsent (bound {config.max_unsent}) "
                  f"for {now - congested_since:.1f}s")
        return Tick(reason, congested_since, ping=False, silent=False, delay=interval)
    delay, report = interval, False
    if not silent:
        quiet_for = now - last_read
        if quiet_for >= timeout:
            report = True
        else:
            delay = min(delay, timeout - quiet_for)
    return Tick(None, congested_since, ping=now - last_write >= interval, silent=report,
                delay=delay)
