"""Wake-up datagrams between the processes sharing one SQLite store.

Owns the *wake directory* of a database: every store client that watches
binds one unix datagram socket there, and every writer sends one byte to each
socket after it commits. A watcher that gets a byte re-reads the change log
at once, so a change reaches the other processes of the host in well under a
millisecond instead of after a polling interval.

Rules:

- Rule 1: a wake carries no data. It only says "read the log"; the log is the
  truth, so a lost or duplicated wake costs latency, never correctness
  (watchers also poll slowly as a fallback).
- Rule 2: sending never blocks and never fails the write: a full receive
  buffer means the watcher is already due to read; a refused send means the
  socket's owner died (even ``kill -9``), so its file is removed.
- Rule 3: socket paths must fit ``sockaddr_un`` (about 100 bytes). When the
  directory next to the database is too deep, a directory under the system
  temporary directory named after a hash of the database's real path is used
  instead, so every client of one database still agrees on one directory.
- Rule 4: the directory goes with its last socket: a client that closes
  removes it when it is empty (``rmdir`` fails harmlessly while any socket
  is left), so directories under the temporary directory do not pile up. A
  client binding into a directory removed meanwhile makes it again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
from pathlib import Path

from shoal._files import FILE_MODE, make_private_dirs

__all__ = ["WakeDir", "wake_dir_for"]

_MAX_SOCKET_PATH = 100
_SUFFIX = ".sock"
_BIND_ATTEMPTS = 3


def wake_dir_for(db_path: Path) -> Path:
    """The wake directory every client of ``db_path`` uses.

    Args:
        db_path: the database file (need not exist yet).

    Returns:
        ``<db>.wake`` when socket paths in it fit ``sockaddr_un``, otherwise
        a directory under the temporary directory keyed by the real path.
    """
    near = db_path.with_name(db_path.name + ".wake")
    probe = near / ("0" * 32 + _SUFFIX)
    if len(os.fsencode(probe)) <= _MAX_SOCKET_PATH:
        return near
    digest = hashlib.sha256(os.fsencode(os.path.realpath(db_path))).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"shoal-wake-{digest}"


class WakeDir:
    """One client's end of a wake directory.

    Args:
        directory: from :func:`wake_dir_for`.
        client_id: this client's unique id (names its socket).
    """

    def __init__(self, directory: Path, client_id: str) -> None:
        self.directory = directory
        self.name = client_id + _SUFFIX
        # Invariant: _sock is bound at directory/name while not None.
        self._sock: socket.socket | None = None
        self._sender: socket.socket | None = None

    def bind(self) -> socket.socket:
        """Create and bind this client's non-blocking receiving socket.

        Returns:
            The socket; register its fd with the event loop.

        Raises:
            OSError: the directory cannot be created or the socket bound.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for attempt in range(_BIND_ATTEMPTS):
                make_private_dirs(self.directory)
                try:
                    sock.bind(os.fspath(self.directory / self.name))
                    break
                except FileNotFoundError:
                    # Rule 4: its last client removed the directory just now.
                    if attempt == _BIND_ATTEMPTS - 1:
                        raise
            os.chmod(self.directory / self.name, FILE_MODE)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        return sock

    def fileno(self) -> int | None:
        """Returns: the receiving socket's fd, or None when not bound."""
        return None if self._sock is None else self._sock.fileno()

    def drain(self) -> None:
        """Read and discard every pending wake byte."""
        if self._sock is None:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._sock.recv(64)

    def notify_others(self) -> None:
        """Send one byte to every other socket in the directory; never raises."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for name in names:
            if name == self.name or not name.endswith(_SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            try:
                self._sender.sendto(b"w", path)
            except (BlockingIOError, InterruptedError):
                pass  # its buffer is full: a wake is already pending there
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
                    # Nobody is bound: its owner died without cleaning up.
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                    if self._sock is None:  # Rule 4, for the dead owner
                        with contextlib.suppress(OSError):
                            os.rmdir(self.directory)

    def close(self) -> None:
        """Close both sockets, remove this client's socket file, and the
        directory if no socket is left in it (Rule 4). Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.directory / self.name)
            with contextlib.suppress(OSError):  # not empty: another client's socket
                os.rmdir(self.directory)
        if self._sender is not None:
            self._sender.close()
            self._sender = None
