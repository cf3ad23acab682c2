"""Private files and directories: what the embedded store and its secret live in.

Owns the modes of everything shoal creates on disk: the store directory
(``.shoal/``), the database and its ``-wal`` and ``-shm``, the lock and wake
directories and their files, and the generated secret. Anyone who can read
the database sees every node and membership; anyone who can write it can
change them; anyone who can read the secret can join the cluster.

Rules:

- Rule 1: a directory shoal creates is 0700 and a file shoal creates is
  0600, whatever the umask: the mode is set again with ``chmod`` after
  creating, because the umask can only narrow the mode given to ``mkdir``
  or ``open`` and a narrowed one (0500, say) would lock shoal out too.
- Rule 2: what exists already is left as it is: a directory the user made
  (their home, ``/srv``) keeps its mode. SQLite gives the ``-wal`` and
  ``-shm`` files the mode of the database file, so the database is created
  here (empty: a valid new database) before SQLite opens it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "create_private_file", "make_private_dirs", "open_private"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each with mode 0700.

    Raises:
        OSError: a directory cannot be created (or ``path`` is a file).
    """
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process, which sets its mode
        os.chmod(directory, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"not a directory: {path}")


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags``, creating it with mode 0600 if it is missing.

    Returns:
        The file descriptor (close-on-exec).

    Raises:
        OSError: it cannot be created or opened.
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists.

    Returns:
        True when this call created it.

    Raises:
        OSError: it cannot be created.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True
