"""Throwaway etcd servers for tests and benchmarks.

What it owns: starting ``etcd`` members as child processes on free loopback
ports with temporary data directories, stopping and restarting them, finding
the leader, and compacting history. It talks to etcd through its HTTP/JSON
gateway with the standard library only, so it works even when the store under
test is broken.

Rules:

- Rule 1: a member is stopped by the PID this module started, never by name.
- Rule 2: every wait is bounded (``ready_timeout``); failures raise
  :class:`EtcdServerError` with the tail of the member's log.
- Rule 3: a missing ``etcd`` binary raises :class:`EtcdNotInstalled` that says
  how to install it (``scripts/ensure-etcd.sh``, Debian's ``etcd-server``).
- Rule 4: a member dies with the process that started it, even one killed
  with SIGKILL (a test runner cut short leaves no etcd behind): it is
  started by ``shoal.testing.launch.spawn_tied``, and its PID is still
  etcd's own (Rule 1; fault tests SIGSTOP and kill it).

Typical use::

    with start_etcd() as etcd:                 # or start_etcd(members=3)
        store = EtcdStore(etcd.endpoints)
        etcd.restart_member(0)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from shoal.testing.launch import spawn_tied
from shoal.testing.ports import free_port

__all__ = [
    "EtcdCluster",
    "EtcdMember",
    "EtcdNotInstalled",
    "EtcdServerError",
    "TlsFiles",
    "etcd_binary",
    "make_tls_files",
    "start_etcd",
]

_INSTALL_HINT = (
    "the etcd binary was not found on PATH (or $SHOAL_ETCD_BIN); install it with "
    "scripts/ensure-etcd.sh, or `apt-get install etcd-server` on Debian/Ubuntu, or "
    "download a release from https://github.com/etcd-io/etcd/releases"
)


class EtcdServerError(RuntimeError):
    """A throwaway etcd member failed to start, stop or answer in time."""


class EtcdNotInstalled(EtcdServerError):
    """No ``etcd`` binary is available; the message says how to install one."""


def etcd_binary() -> str:
    """Locate the etcd server binary.

    Returns:
        Its path: ``$SHOAL_ETCD_BIN`` if set, else ``etcd`` on ``PATH``.

    Raises:
        EtcdNotInstalled: no binary was found.
    """
    configured = os.environ.get("SHOAL_ETCD_BIN")
    found = configured if configured and os.access(configured, os.X_OK) else shutil.which("etcd")
    if not found:
        raise EtcdNotInstalled(_INSTALL_HINT)
    return found


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-serving test etcd and its clients (all for 127.0.0.1)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: str | Path) -> TlsFiles:
    """Create a throwaway CA, a server certificate for 127.0.0.1 and a client
    certificate, with the ``openssl`` command.

    Args:
        directory: where the PEM files go (created if missing).

    Returns:
        Their paths.

    Raises:
        EtcdServerError: ``openssl`` is missing or failed.
    """
    if shutil.which("openssl") is None:
        raise EtcdServerError("openssl is needed to make test certificates")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        *(root / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"))
    )
    ca_key = root / "ca.key"

    def run(*args: str) -> None:
        done = subprocess.run(["openssl", *args], capture_output=True, check=False, timeout=30)
        if done.returncode != 0:
            raise EtcdServerError(f"openssl {args[0]} failed: {done.stderr.decode()[-500:]}")

    run(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=shoal-test-ca", "-keyout", str(ca_key), "-out", str(files.ca)),
    )
    for cert, key, name in (
        (files.server_cert, files.server_key, "127.0.0.1"),
        (files.client_cert, files.client_key, "shoal-client"),
    ):
        request = cert.with_suffix(".csr")
        run(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", str(key), "-out", str(request)),
        )
        extensions = cert.with_suffix(".ext")
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        run(
            *("x509", "-req", "-in", str(request), "-CA", str(files.ca), "-CAkey", str(ca_key)),
            *("-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extensions)),
        )
    return files


@dataclass
class EtcdMember:
    """One etcd member process.

    Attributes:
        name: member name inside the etcd cluster.
        client_port, peer_port: loopback ports it listens on.
        data_dir: its data directory (kept across restarts).
        process: the running child, or ``None`` while stopped.
    """

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:<client port>``, as the store's URL expects it."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """PID of the running process, ``None`` while stopped."""
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        """Where the member's output goes."""
        return self.data_dir.parent / f"{self.name}.log"

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the member's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class EtcdCluster:
    """A set of throwaway members on loopback; see :func:`start_etcd`."""

    def __init__(
        self,
        members: list[EtcdMember],
        base_dir: Path,
        *,
        owns_dir: bool,
        tls: TlsFiles | None = None,
    ) -> None:
        self.members = members
        self.tls = tls
        self._scheme = "https" if tls else "http"
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.create_default_context(cafile=str(tls.ca))
            self._context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
        self._base_dir = base_dir
        self._owns_dir = owns_dir
        self._binary = etcd_binary()

    # --- addresses ---------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` of every member, in member order."""
        return [m.endpoint for m in self.members]

    @property
    def endpoint(self) -> str:
        """The first member's ``host:port``."""
        return self.members[0].endpoint

    def url(self, cluster: str | None = None) -> str:
        """An ``etcd://`` URL naming every member (and ``cluster`` if given)."""
        query = f"?cluster={cluster}" if cluster else ""
        return "etcd://" + ",".join(self.endpoints) + query

    # --- life cycle --------------------------------------------------------

    def _command(self, member: EtcdMember) -> list[str]:
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        return [
            self._binary,
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={self._scheme}://127.0.0.1:{member.client_port}",
            f"--advertise-client-urls={self._scheme}://127.0.0.1:{member.client_port}",
            f"--listen-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=shoal-test-{self.members[0].client_port}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--log-level=warn",
            "--logger=zap",
            *self._tls_flags(),
        ]

    def _tls_flags(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"--cert-file={self.tls.server_cert}",
            f"--key-file={self.tls.server_key}",
            f"--trusted-ca-file={self.tls.ca}",
            "--client-cert-auth",
        ]

    def start_member(self, index: int, *, wait: bool = True, ready_timeout: float = 15.0) -> None:
        """Start (or restart) member ``index`` with its existing data directory.

        Args:
            index: position in :attr:`members`.
            wait: wait until it reports healthy.
            ready_timeout: how long to wait, in seconds.

        Raises:
            EtcdServerError: it is already running, or did not become healthy.
        """
        member = self.members[index]
        if member.process is not None and member.process.poll() is None:
            raise EtcdServerError(f"member {member.name} is already running (pid {member.pid})")
        member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(member.log_path, "ab") as log:
            member.process = spawn_tied(self._command(member), log)
        if wait:
            self.wait_healthy(index, ready_timeout)

    def stop_member(self, index: int, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop member ``index`` by its PID (SIGTERM, or SIGKILL with ``kill``).

        Raises:
            EtcdServerError: it did not exit within ``timeout`` seconds even
                after SIGKILL.
        """
        member = self.members[index]
        process, member.process = member.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired as error:
                raise EtcdServerError(
                    f"member {member.name} (pid {process.pid}) ignores SIGKILL"
                ) from error

    def restart_member(
        self, index: int, *, kill: bool = False, ready_timeout: float = 15.0
    ) -> None:
        """Stop member ``index`` and start it again on the same ports and data."""
        self.stop_member(index, kill=kill)
        self.start_member(index, ready_timeout=ready_timeout)

    def wait_healthy(self, index: int, timeout: float = 15.0) -> None:
        """Wait until member ``index`` answers ``/health`` with true.

        Raises:
            EtcdServerError: it exited, or was not healthy within ``timeout``.
        """
        member = self.members[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if member.process is None or member.process.poll() is not None:
                raise EtcdServerError(f"etcd member {member.name} exited:\n{member.log_tail()}")
            try:
                with urllib.request.urlopen(
                    f"{self._scheme}://{member.endpoint}/health", timeout=1.0, context=self._context
                ) as response:
                    if json.loads(response.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)  # polling a child process's readiness; there is no event to wait on
        raise EtcdServerError(
            f"etcd member {member.name} not healthy after {timeout:g}s:\n{member.log_tail()}"
        )

    def close(self) -> None:
        """Stop every member and delete the data unless the caller gave the directory."""
        for index in range(len(self.members)):
            self.stop_member(index, kill=True)
        if self._owns_dir:
            shutil.rmtree(self._base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- inspection and maintenance ---------------------------------------

    def _post(self, index: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        member = self.members[index]
        request = urllib.request.Request(
            f"{self._scheme}://{member.endpoint}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5.0, context=self._context) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as error:  # etcd's explanation is in the body
            detail = error.read().decode(errors="replace")[:300]
            raise EtcdServerError(f"{path} on {member.endpoint} failed: {error}: {detail}") \
                from error
        except (OSError, ValueError) as error:
            raise EtcdServerError(f"{path} on {member.endpoint} failed: {error}") from error

    def _running(self) -> list[int]:
        running = [i for i, m in enumerate(self.members) if m.process and m.process.poll() is None]
        if not running:
            raise EtcdServerError("no etcd member is running")
        return running

    def revision(self) -> int:
        """The current revision of the key-value store."""
        status = self._post(self._running()[0], "/v3/maintenance/status", {})
        return int(status["header"]["revision"])

    def db_size(self) -> tuple[int, int]:
        """etcd's database file size and the part of it in use, in bytes
        (``dbSize``, ``dbSizeInUse``: compacted space is reused, not returned)."""
        status = self._post(self._running()[0], "/v3/maintenance/status", {})
        return int(status["dbSize"]), int(status.get("dbSizeInUse", status["dbSize"]))

    def history_kept(self, revision: int) -> bool:
        """Whether etcd can still read the store at ``revision`` (False: compacted)."""
        body = {"key": base64.b64encode(b"/").decode(), "revision": revision, "limit": 1}
        try:
            self._post(self._running()[0], "/v3/kv/range", body)
        except EtcdServerError as error:
            if "compacted" in str(error):
                return False
            raise
        return True

    def leader(self) -> int:
        """Index in :attr:`members` of the current leader.

        Raises:
            EtcdServerError: no running member knows a leader.
        """
        for index in self._running():
            status = self._post(index, "/v3/maintenance/status", {})
            leader = int(status.get("leader", 0))
            if leader and leader == int(status["header"]["member_id"]):
                return index
        raise EtcdServerError("no running member is the leader")

    def compact(self, revision: int | None = None) -> int:
        """Discard history below ``revision`` (default: the current revision).

        Returns:
            The revision compacted to.
        """
        target = self.revision() if revision is None else revision
        self._post(self._running()[0], "/v3/kv/compaction", {"revision": target, "physical": True})
        return target

    def revoke_lease(self, lease: int) -> None:
        """Revoke a lease as an operator would (``etcdctl lease revoke``).

        Args:
            lease: the lease id (an EtcdStore session id is its hex form).
        """
        self._post(self._running()[0], "/v3/lease/revoke", {"ID": str(lease)})

    def put(self, key: str, value: str) -> int:
        """Write a key without a lease (for tests that need foreign writes)."""
        body = {
            "key": base64.b64encode(key.encode()).decode(),
            "value": base64.b64encode(value.encode()).decode(),
        }
        return int(self._post(self._running()[0], "/v3/kv/put", body)["header"]["revision"])


def start_etcd(
    *,
    members: int = 1,
    base_dir: str | Path | None = None,
    ready_timeout: float = 20.0,
    tls: TlsFiles | None = None,
) -> EtcdCluster:
    """Start a throwaway etcd cluster on free loopback ports.

    Args:
        members: how many members (1, or 3 for fault tests).
        base_dir: where data and logs go; a temporary directory (removed on
            :meth:`EtcdCluster.close`) when omitted.
        ready_timeout: seconds to wait for every member to become healthy.
        tls: serve clients over TLS with these files (see
            :func:`make_tls_files`), requiring client certificates.

    Returns:
        The running cluster; use it as a context manager or call ``close()``.

    Raises:
        EtcdNotInstalled: no etcd binary is available.
        EtcdServerError: a member did not become healthy in time.
    """
    etcd_binary()
    owns_dir = base_dir is None
    root = Path(tempfile.mkdtemp(prefix="shoal-etcd-")) if base_dir is None else Path(base_dir)
    ports = [(free_port(), free_port()) for _ in range(members)]
    cluster = EtcdCluster(
        [
            EtcdMember(f"m{i}", client, peer, root / f"m{i}" / "data")
            for i, (client, peer) in enumerate(ports)
        ],
        root,
        owns_dir=owns_dir,
        tls=tls,
    )
    try:
        for index in range(members):
            cluster.start_member(index, wait=False)
        for index in range(members):
            cluster.wait_healthy(index, ready_timeout)
    except BaseException:
        cluster.close()
        raise
    return cluster
