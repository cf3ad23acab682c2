"""Node configuration: names, the cluster secret, the store URL, the listen address.

Every setting can come from an argument or an environment variable, the
argument winning:

| setting | argument | environment | default |
| --- | --- | --- | --- |
| cluster name | ``cluster`` | ``SHOAL_CLUSTER`` | ``"default"`` |
| secret | ``secret`` | ``SHOAL_SECRET``, ``SHOAL_SECRET_FILE`` | see below |
| store | ``store`` | ``SHOAL_STORE`` | ``sqlite://.shoal/cluster.db`` (relative path) |
| listen address | ``listen`` | ``SHOAL_LISTEN`` | ``127.0.0.1:0`` |
| address peers dial | ``advertise`` | ``SHOAL_ADVERTISE`` | the listen address |
| peer TLS | ``tls_cert``, ``tls_key``, ``tls_ca`` | ``SHOAL_TLS_{CERT,KEY,CA}`` | off |
| TLS name to verify | ``tls_server_name`` | ``SHOAL_TLS_SERVER_NAME`` | the dialled address |

The secret proves membership of the cluster in every handshake (G7). A
secret file must be the user's own and readable by its owner only: a file
owned by another user, or that group or others can read, is refused with
:class:`~shoal.ConfigError`, as ssh refuses such a private key. With the
embedded SQLite store and no secret given, the nodes of one host share one
generated in ``<store dir>/secret`` (mode 0600, in a directory shoal
creates with mode 0700, as it does every file and directory of the store:
see :mod:`shoal._files`): zero set-up on one host, and only the user
who owns the store can join. Any other store needs an explicit secret.

Peer TLS is mutual: with a certificate, its key and a CA bundle, a node
serves TLS, demands a certificate signed by that CA from every peer that
dials it, and checks each peer it dials against the same CA and against the
address it dials (or ``tls_server_name``). The shoal handshake (the secret)
runs inside TLS as before. All three files or none: a partial setting is a
:class:`~shoal.ConfigError`, never a silent fall-back to plain TCP.
"""

from __future__ import annotations

import os
import secrets
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from shoal._files import FILE_MODE, make_private_dirs
from shoal.errors import BadArgument, ConfigError
from shoal.store import Store

__all__ = ["DEFAULT_STORE", "NodeConfig", "PeerTLS", "listen_addresses", "load_peer_tls",
           "load_secret", "parse_advertise", "parse_listen", "peer_tls", "store_and_addresses"]

DEFAULT_STORE = "sqlite://.shoal/cluster.db"
MIN_SECRET = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Resolved settings of one node (see the module docstring)."""

    cluster: str
    secret: bytes
    store_url: str
    listen_host: str
    listen_port: int


def parse_listen(value: str) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` for IPv6).

    Raises:
        BadArgument: not of that form, or the port is out of range.
    """
    if not isinstance(value, str) or ":" not in value:
        raise BadArgument("listen", value, "'host:port', e.g. '127.0.0.1:0'")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise BadArgument("listen", value, "'host:port' with a numeric port") from None
    if not host or not 0 <= port <= 65535:
        raise BadArgument("listen", value, "'host:port' with a port in 0..65535")
    return host, port


Address = tuple[str, int]


def store_and_addresses(store: str | Store | None, listen: str | None, advertise: str | None,
                        ) -> tuple[str | Store, Address | None, Address | None]:
    """A node's store (``Node``'s ``store``: a URL or a Store, default
    ``SHOAL_STORE``, else :data:`DEFAULT_STORE`), then its listen and
    advertised addresses (:func:`listen_addresses`).

    Raises:
        BadArgument: ``store`` is neither a URL nor a Store, or an address
            is malformed.
    """
    if store is None:
        store = os.environ.get("SHOAL_STORE") or DEFAULT_STORE
    if not isinstance(store, str) and not isinstance(store, Store):
        raise BadArgument("store", store, "a store URL or a shoal Store")
    return (store, *listen_addresses(listen, advertise, store))


def listen_addresses(listen: str | None, advertise: str | None, store: object
                     ) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """A node's listen address and the address it advertises (see
    ``Node``'s ``listen`` and ``advertise``), from the arguments, else the
    environment: ``listen=""`` means ``SHOAL_LISTEN``, else ``127.0.0.1:0``
    (no listener for ``memory://``); no ``advertise`` means ``SHOAL_ADVERTISE``.

    Raises:
        BadArgument: a malformed address, or ``advertise`` without a listener.
    """
    if listen == "":
        listen = os.environ.get("SHOAL_LISTEN") or (
            None if store == "memory://" else "127.0.0.1:0")
    parsed = parse_listen(listen) if listen is not None else None
    if advertise is not None and parsed is None:
        raise BadArgument("advertise", advertise, "no advertise address without a listener "
                          "(listen=None)")
    if advertise is None and parsed is not None:
        advertise = os.environ.get("SHOAL_ADVERTISE") or None
    return parsed, parse_advertise(advertise) if advertise is not None else None


def parse_advertise(value: str) -> tuple[str, int]:
    """Parse ``host:port`` or ``host`` (port 0: the port listened on).

    Raises:
        BadArgument: empty, a port that is not a number in 0..65535, or a
            host with spaces or ``/``.
    """
    if not isinstance(value, str) or not value.strip():
        raise BadArgument("advertise", value, "'host:port' or 'host', e.g. '10.0.0.5:7000'")
    text = value.strip()
    bare_v6 = text.count(":") > 1 and not text.startswith("[")
    if ":" in text and not bare_v6:
        try:
            host, port = parse_listen(text)
        except BadArgument:
            raise BadArgument("advertise", value,
                              "'host:port' with a port in 0..65535, or 'host'") from None
    else:
        host, port = text, 0
    if not host or any(c.isspace() or c == "/" for c in host):
        raise BadArgument("advertise", value, "a host name or address without spaces or '/'")
    return host, port


def _read_secret_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())  # of the file read, not of a path swapped meanwhile
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"secret file {path} is owned by uid {info.st_uid}, not by this user "
            f"(uid {os.geteuid()}); a secret must be its reader's own file, as ssh requires "
            f"of a private key: run: chown {os.geteuid()} {path}"
        )
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file {path} is readable by others (mode {stat.filemode(info.st_mode)}); "
            f"run: chmod 600 {path}"
        )
    secret = data.strip()
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"secret in {path} is shorter than {MIN_SECRET} bytes")
    return secret


def _shared_host_secret(store_url: str) -> bytes | None:
    """The generated secret beside an embedded SQLite store, created once.

    Nodes starting together on a fresh directory race to create it: the
    secret is written to a private temporary file first and linked into
    place, so a reader sees it whole or not at all (an empty file read
    between another node's create and write was refused as too short).
    """
    if not store_url.startswith("sqlite://"):
        return None
    db = Path(store_url[len("sqlite://"):])
    path = db.parent / "secret"
    if os.path.lexists(path):
        return _read_secret_file(path)
    draft = path.with_name(f".secret-{os.getpid()}-{secrets.token_hex(8)}")
    try:
        make_private_dirs(path.parent)
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), FILE_MODE)  # whatever the umask (shoal._files)
                out.write(secrets.token_hex(32).encode())
            os.link(draft, path)
        except FileExistsError:
            pass  # another node's secret got there first: everyone uses that one
        finally:
            os.unlink(draft)
    except OSError as exc:
        raise ConfigError(f"cannot create secret file {path}: {exc.strerror or exc}") from None
    return _read_secret_file(path)


def load_secret(secret: bytes | str | None, store_url: str) -> bytes:
    """Resolve the cluster secret (see the module docstring).

    Raises:
        ConfigError: no secret is configured where one is required, the file
            is unsafe or unreadable, or the secret is too short.
        BadArgument: ``secret`` is neither bytes nor str.
    """
    if secret is None:
        if os.environ.get("SHOAL_SECRET"):
            secret = os.environ["SHOAL_SECRET"]
        elif os.environ.get("SHOAL_SECRET_FILE"):
            return _read_secret_file(Path(os.environ["SHOAL_SECRET_FILE"]))
        elif store_url.startswith("memory://"):
            return secrets.token_bytes(32)  # a private store: no peer can exist
        else:
            shared = _shared_host_secret(store_url)
            if shared is None:
                raise ConfigError(
                    "no cluster secret: pass secret=..., or set SHOAL_SECRET or "
                    "SHOAL_SECRET_FILE (a file readable only by its owner)"
                )
            return shared
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        raise BadArgument("secret", secret, "bytes or str")
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"the cluster secret must be at least {MIN_SECRET} bytes")
    return secret


@dataclass(frozen=True, slots=True)
class PeerTLS:
    """The TLS contexts of a node's peer connections (see the module docstring)."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    server_name: str | None


_TLS_FILES = (("tls_cert", "SHOAL_TLS_CERT", "certificate"),
              ("tls_key", "SHOAL_TLS_KEY", "private key"),
              ("tls_ca", "SHOAL_TLS_CA", "CA bundle"))


def load_peer_tls(cert: str | os.PathLike[str] | None = None,
                  key: str | os.PathLike[str] | None = None,
                  ca: str | os.PathLike[str] | None = None,
                  server_name: str | None = None) -> PeerTLS | None:
    """Build mutual-TLS contexts from PEM files (arguments, else environment).

    Returns:
        None when no TLS file is configured at all.

    Raises:
        ConfigError: some but not all of the three files are configured, a
            file cannot be read, or its contents are not a matching PEM
            certificate, key and CA bundle.
    """
    given = [cert, key, ca]
    paths: dict[str, str] = {}
    for value, (arg, env, _) in zip(given, _TLS_FILES, strict=True):
        chosen = os.fspath(value) if value is not None else os.environ.get(env, "")
        if chosen:
            paths[arg] = chosen
    name = server_name or os.environ.get("SHOAL_TLS_SERVER_NAME") or None
    if not paths:
        if name:
            raise ConfigError("tls_server_name is set but peer TLS is not: give tls_cert, "
                              "tls_key and tls_ca (or SHOAL_TLS_CERT, SHOAL_TLS_KEY, SHOAL_TLS_CA)")
        return None
    missing = [f"{arg} (or {env})" for arg, env, _ in _TLS_FILES if arg not in paths]
    if missing:
        raise ConfigError("peer TLS needs a certificate, its key and a CA bundle; missing: "
                          + ", ".join(missing))
    for arg, _, what in _TLS_FILES:
        try:
            with open(paths[arg], "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read the TLS {what} {paths[arg]}: "
                              f"{exc.strerror or exc}") from None
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=paths["tls_ca"])
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_cert_chain(paths["tls_cert"], paths["tls_key"])
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=paths["tls_ca"])
        client.load_cert_chain(paths["tls_cert"], paths["tls_key"])
    except ssl.SSLError as exc:
        raise ConfigError(f"peer TLS: certificate {paths['tls_cert']}, key {paths['tls_key']}, "
                          f"CA {paths['tls_ca']}: {exc.reason or exc}") from None
    return PeerTLS(server, client, name)


def peer_tls(server_ssl: ssl.SSLContext | None, client_ssl: ssl.SSLContext | None,
             cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None,
             ca: str | os.PathLike[str] | None, server_name: str | None,
             ) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None, str | None]:
    """A node's (server context, client context, name to verify): ready-made
    contexts win over the files; the files (or ``SHOAL_TLS_*``) otherwise.

    Raises:
        ConfigError: as :func:`load_peer_tls`.
    """
    if server_ssl is not None or client_ssl is not None:
        return server_ssl, client_ssl, server_name or os.environ.get("SHOAL_TLS_SERVER_NAME")
    tls = load_peer_tls(cert, key, ca, server_name)
    if tls is None:
        return None, None, None
    return tls.server, tls.client, tls.server_name
