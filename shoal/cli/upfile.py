"""The cluster file of ``shoal up``: read, check strictly, resolve paths.

Owns the file format (README "Local clusters: shoal up"), and where the
running ``shoal up`` of a file keeps its state (:func:`state_path`).

Rules:

- Rule 1: the file is checked whole before anything starts. An unknown key,
  a missing ``app``, a value of the wrong type, a bad or duplicate node
  name is a :class:`shoal.ConfigError` (exit 2) whose one-line message
  names the file and the key.
- Rule 2: relative paths mean relative to the file's directory, whatever
  the working directory of the command reading it: every node runs there,
  and a relative ``sqlite://`` store path is made absolute against it, so
  ``shoal up``, ``shoal down`` and ``shoal deploy`` agree on the store.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shoal
from shoal.runtime.checks import check_name

__all__ = ["NodeSpec", "RestartPolicy", "UpConfig", "load_config", "state_path"]

_TOP_KEYS = {"cluster", "store", "app", "args", "env", "restart", "node"}
_NODE_KEYS = {"name", "app", "args", "env"}
_RESTART_KEYS = {"max_restarts", "window_s", "backoff_initial_s", "backoff_max_s",
                 "stop_timeout_s"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """How ``shoal up`` restarts a node that died, and stops one."""

    max_restarts: int = 5
    """Restarts of one node allowed within ``window_s``; past that it is left stopped."""
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    stop_timeout_s: float = 30.0
    """Seconds a node has to stop after SIGTERM before it gets SIGKILL."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSpec:
    """One node of the file: ``shoal run APP --node NAME ...``."""

    name: str
    app: str
    args: tuple[str, ...]
    env: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpConfig:
    """A checked cluster file."""

    path: Path
    """The file, absolute."""
    cluster: str
    store: str
    """The store URL, with a SQLite path made absolute (Rule 2)."""
    nodes: tuple[NodeSpec, ...]
    restart: RestartPolicy

    @property
    def directory(self) -> Path:
        return self.path.parent

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise shoal.BadArgument("node", name, f"a node of {self.path.name}: "
                                              f"{', '.join(n.name for n in self.nodes)}")

    def command(self, spec: NodeSpec, python: str) -> list[str]:
        """The ``shoal run`` command line of one node."""
        return [python, "-m", "shoal.cli", "run", spec.app, "--node", spec.name,
                "--store", self.store, "--cluster", self.cluster, *spec.args]


def state_path(config: UpConfig) -> Path:
    """Where the ``shoal up`` of this file keeps its state: ``.shoal/up-<cluster>.json``
    beside the file."""
    return config.directory / ".shoal" / f"up-{config.cluster}.json"


def load_config(path: str | Path) -> UpConfig:
    """Read and check a cluster file.

    Raises:
        ConfigError: it cannot be read, is not TOML, or breaks the format
            (the message names the file and the key).
    """
    file = Path(path).absolute()
    try:
        with file.open("rb") as stream:
            data = tomllib.load(stream)
    except OSError as exc:
        raise shoal.ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise shoal.ConfigError(f"{path}: not TOML ({exc})") from None
    where = file.name
    _known(data, _TOP_KEYS, where, "")
    cluster = _text(data, "cluster", where, "", "default")
    check = _check(where, "cluster")
    try:
        check_name("cluster", cluster)
    except shoal.BadArgument:
        raise check("a non-empty name without '/'") from None
    store = _store(_text(data, "store", where, "", "sqlite://.shoal/cluster.db"), file.parent)
    app = data.get("app")
    if app is not None and (type(app) is not str or ":" not in app):
        raise _check(where, "app")("MODULE:FUNCTION (or a supervisor factory), e.g. "
                                   "'workers:setup'")
    args = _args(data, where, "")
    env = _env(data, where, "")
    restart = _restart(data.get("restart", {}), where)
    raw_nodes = data.get("node")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise shoal.ConfigError(f"{where}: missing key 'node': at least one [[node]] "
                                "table with a name")
    nodes: list[NodeSpec] = []
    for index, raw in enumerate(raw_nodes, start=1):
        label = f"node[{index}]."
        if not isinstance(raw, dict):
            raise _check(where, f"node[{index}]")("a table")
        _known(raw, _NODE_KEYS, where, label)
        try:
            name = check_name("name", raw.get("name"))
        except shoal.BadArgument:
            raise _check(where, f"{label}name")("a non-empty node name without '/'") from None
        if name.startswith("shoal-cli-"):
            raise _check(where, f"{label}name")("a name not starting with 'shoal-cli-' "
                                                "(the commands' own nodes)")
        if any(n.name == name for n in nodes):
            raise shoal.ConfigError(f"{where}: duplicate node name {name!r} at {label}name")
        node_app = raw.get("app", app)
        if node_app is None:
            raise shoal.ConfigError(f"{where}: missing key 'app' (at the top, or "
                                    f"{label}app for node {name!r})")
        if type(node_app) is not str or ":" not in node_app:
            raise _check(where, f"{label}app")("MODULE:FUNCTION, e.g. 'workers:setup'")
        nodes.append(NodeSpec(name=name, app=node_app,
                              args=(*args, *_args(raw, where, label)),
                              env={**env, **_env(raw, where, label)}))
    return UpConfig(path=file, cluster=cluster, store=store, nodes=tuple(nodes),
                    restart=restart)


def _check(where: str, key: str) -> Any:
    def error(expected: str) -> shoal.ConfigError:
        return shoal.ConfigError(f"{where}: bad value for key '{key}': expected {expected}")
    return error


def _known(table: dict[str, Any], keys: set[str], where: str, label: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise shoal.ConfigError(f"{where}: unknown key '{label}{unknown[0]}' (known: "
                                f"{', '.join(sorted(keys))})")


def _text(table: dict[str, Any], key: str, where: str, label: str, default: str) -> str:
    value = table.get(key, default)
    if type(value) is not str or not value:
        raise _check(where, label + key)("a non-empty string")
    return value


def _store(url: str, base: Path) -> str:
    if not url.startswith("sqlite://"):
        return url
    path = Path(url.removeprefix("sqlite://"))
    return f"sqlite://{path if path.is_absolute() else base / path}"


def _args(table: dict[str, Any], where: str, label: str) -> tuple[str, ...]:
    value = table.get("args", [])
    if not isinstance(value, list) or not all(type(a) is str for a in value):
        raise _check(where, label + "args")("a list of strings (extra `shoal run` options)")
    for reserved in ("--node", "--store", "--cluster"):
        if reserved in value or any(a.startswith(reserved + "=") for a in value):
            raise _check(where, label + "args")(f"options other than {reserved} (set by "
                                                "the file itself)")
    return tuple(value)


def _env(table: dict[str, Any], where: str, label: str) -> dict[str, str]:
    value = table.get("env", {})
    if not isinstance(value, dict) or not all(type(v) is str for v in value.values()):
        raise _check(where, label + "env")("a table of strings")
    return dict(value)


def _restart(value: Any, where: str) -> RestartPolicy:
    if not isinstance(value, dict):
        raise _check(where, "restart")("a table")
    _known(value, _RESTART_KEYS, where, "restart.")
    numbers: dict[str, Any] = {}
    for key, raw in value.items():
        ok = (type(raw) is int and raw >= 0) if key == "max_restarts" else (
            type(raw) in (int, float) and 0 < raw < 86_400)
        if not ok:
            raise _check(where, f"restart.{key}")(
                "an integer >= 0" if key == "max_restarts" else "a number of seconds > 0")
        numbers[key] = raw
    policy = RestartPolicy(**numbers)
    if policy.backoff_max_s < policy.backoff_initial_s:
        raise _check(where, "restart.backoff_max_s")("a number >= restart.backoff_initial_s")
    return policy
