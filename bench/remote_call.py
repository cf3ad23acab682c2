"""Remote call round trip: two shoal nodes next to two Erlang/OTP nodes.

Both sides run the same experiment on loopback, in the same run: a client
node calls an echo server on another node (OS process) of the same machine.

- latency: 1 caller, sequential calls, p50 and p99 (shoal ``node.call`` to a
  remote pid; Erlang ``gen_server:call`` to a registered server on another node);
- throughput: 8 and 64 concurrent callers (tasks / Erlang processes).

Erlang/OTP comes from Debian's ``erlang-nox``; the benchmark installs it when
``erl`` is missing and it is root, and says so clearly when Erlang cannot be
had (then only shoal's figures are printed, and no ratio).

Both sides run with their defaults, which include busy waiting: a shoal
node keeps polling 150 µs after call traffic (``docs/operations.md``, "Busy
polling"), Erlang's schedulers spin before they sleep (``+sbwt``). On
virtual machines whose idle CPUs halt, that waiting decides most of the
latency, so each round also runs both without it (shoal with
``SHOAL_BUSY_POLL_US=0``, Erlang with ``+sbwt none +sbwtdcpu none +sbwtdio
none``): ``shoal_nopoll_*``, ``erlang_nobusywait_*`` and
``latency_ratio_vs_erlang_no_busy_wait`` (``--no-busy-wait-pair 0`` skips
them).

Each side starts on a settled host: the run waits (30 s at most) until the
CPU pressure (PSI ``some avg10``) is below 5%, since a phase that saturated
both cores keeps that average up for a while and a shoal node does not
busy-poll under pressure; ``cpu_pressure_pct_at_starts_max`` is the highest
pressure a side started at.

Last lines: ``throughput_ratio_vs_erlang`` (64 callers, shoal / Erlang) and
``latency_ratio_vs_erlang`` (p50, shoal / Erlang; below 1 is better), both
sides with their defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, loop_name, machine, median, percentile, run, settle

import shoal

HERE = Path(__file__).resolve().parent
SECRET = "remote-call-benchmark-secret-0123456789"


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def serve(store: str, ready: str) -> None:
    async with shoal.Node("bench-server", store=store, secret=SECRET) as node:
        pid = await node.spawn(Echo)
        await node.groups.join("echo", pid)
        Path(ready).write_text(json.dumps(list(pid)))  # noqa: ASYNC240 - once, at start
        stop = asyncio.get_running_loop().create_future()
        import signal

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await stop


async def client(store: str, calls: int, concurrency: list[int]) -> dict[str, float]:
    async with shoal.Node("bench-client", store=store, secret=SECRET) as node:
        deadline = time.monotonic() + 10
        while not node.groups.get_members("echo"):
            if time.monotonic() > deadline:
                raise SystemExit("the server node never appeared")
            await asyncio.sleep(0.01)
        pid = node.groups.get_members("echo")[0]
        call = node.call
        for i in range(2000):  # warm up: connect, caches
            await call(pid, i)
        clock = time.perf_counter_ns
        samples = []
        for i in range(calls):
            t0 = clock()
            await call(pid, i)
            samples.append((clock() - t0) / 1000)
        out = {"p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99)}
        for callers in concurrency:
            per = calls // callers

            async def one(per: int = per) -> None:
                for i in range(per):
                    await call(pid, i)

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(callers)))
            out[f"throughput_{callers}"] = per * callers / (time.perf_counter() - t0)
        return out


NO_BUSY_WAIT_ERLANG = ["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"]


def shoal_side(calls: int, concurrency: list[int], poll: bool = True) -> dict[str, float]:
    env = dict(os.environ)
    if poll:
        env.pop("SHOAL_BUSY_POLL_US", None)  # the default
    else:
        env["SHOAL_BUSY_POLL_US"] = "0"
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        store = f"sqlite://{tmp}/cluster.db"
        ready = os.path.join(tmp, "ready")
        server = subprocess.Popen([sys.executable, __file__, "--role", "server",
                                   "--store", store, "--ready", ready], env=env)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(ready):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the shoal server node did not start")
                time.sleep(0.01)
            result = subprocess.run(
                [sys.executable, __file__, "--role", "client", "--store", store,
                 "--calls", str(calls), "--concurrency", ",".join(map(str, concurrency))],
                check=True, capture_output=True, text=True, timeout=600, env=env)
            return dict(json.loads(result.stdout.strip().splitlines()[-1]))
        finally:
            server.terminate()
            server.wait(timeout=20)


def ensure_erlang() -> str | None:
    """Path of ``erl``, installing Debian's erlang-nox if missing and root."""
    if shutil.which("erl") and shutil.which("erlc"):
        return shutil.which("erl")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("erlang: installing Debian's erlang-nox", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "erlang-nox"], env=env,
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("erl") if shutil.which("erlc") else None


def erlang_side(calls: int, concurrency: list[int], flags: tuple[str, ...] = (),
                ) -> dict[str, float] | None:
    erl = ensure_erlang()
    if erl is None:
        print("erlang: NOT AVAILABLE (erl/erlc not found and erlang-nox could not be "
              "installed); printing shoal's figures only", flush=True)
        return None
    with tempfile.TemporaryDirectory(prefix="shoal-bench-erl-") as build:
        subprocess.run(["erlc", "-o", build, str(HERE / "erlang" / "shoal_bench_echo.erl")],
                       check=True)
        suffix = str(os.getpid())
        server_name = f"benchsrv{suffix}@127.0.0.1"
        common = ["-noshell", "-setcookie", f"shoalbench{suffix}", "-pa", build, *flags]
        server = subprocess.Popen([erl, "-name", server_name, *common,
                                   "-s", "shoal_bench_echo", "start"])
        try:
            for _ in range(100):  # the server registers with epmd; bounded wait
                probe = subprocess.run(
                    [erl, "-name", f"benchprobe{suffix}@127.0.0.1", *common, "-eval",
                     f"halt(case net_adm:ping('{server_name}') of pong -> "
                     f"case rpc:call('{server_name}', erlang, whereis, "
                     f"[shoal_bench_echo]) of P when is_pid(P) -> 0; _ -> 1 end; "
                     f"_ -> 1 end)"],
                    capture_output=True, timeout=30)
                if probe.returncode == 0:
                    break
            else:
                raise SystemExit("the Erlang server node did not start")
            result = subprocess.run(
                [erl, "-name", f"benchcli{suffix}@127.0.0.1", *common, "-s",
                 "shoal_bench_echo", "main", server_name, str(calls),
                 *map(str, concurrency)],
                check=True, capture_output=True, text=True, timeout=600)
        finally:
            server.terminate()
            server.wait(timeout=20)
    out: dict[str, float] = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("erlang_"):
            out[name.removeprefix("erlang_")] = float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "server", "client"], default="bench")
    parser.add_argument("--store", default="")
    parser.add_argument("--ready", default="")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", default="8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-erlang", action="store_true",
                        help="measure shoal only (no ratios are printed)")
    parser.add_argument("--no-busy-wait-pair", type=int, choices=[0, 1], default=1,
                        help="also run both sides without busy waiting (default 1)")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.role == "server":
        run(lambda: serve(args.store, args.ready))
        return
    if args.role == "client":
        print(json.dumps(run(lambda: client(args.store, args.calls, concurrency))))
        return
    print(f"machine: {machine()}")
    print(f"loop: {loop_name()}")
    shoal_runs, erlang_runs = [], []
    nopoll_runs: list[dict[str, float]] = []
    nobusy_runs: list[dict[str, float]] = []
    pressures: list[float] = []

    def settled() -> None:
        level = settle()
        if level is not None:
            pressures.append(level)

    for _ in range(args.rounds):  # alternate, so drift hits both sides alike
        settled()
        shoal_runs.append(shoal_side(args.calls, concurrency))
        settled()
        erl = None if args.skip_erlang else erlang_side(args.calls, concurrency)
        if erl is not None:
            erlang_runs.append(erl)
        if args.no_busy_wait_pair:
            settled()
            nopoll_runs.append(shoal_side(args.calls, concurrency, poll=False))
            settled()
            erl = None if args.skip_erlang else erlang_side(
                args.calls, concurrency, tuple(NO_BUSY_WAIT_ERLANG))
            if erl is not None:
                nobusy_runs.append(erl)

    def mid(runs: list[dict[str, float]], key: str) -> float:
        return median([r[key] for r in runs])

    for label, runs in (("shoal_nopoll", nopoll_runs), ("erlang_nobusywait", nobusy_runs),
                        ("shoal", shoal_runs), ("erlang", erlang_runs)):
        if not runs:
            continue
        emit(f"{label}_p50_us", mid(runs, "p50_us"), "us")
        emit(f"{label}_p99_us", mid(runs, "p99_us"), "us")
        for c in concurrency:
            emit(f"{label}_throughput_{c}_callers", mid(runs, f"throughput_{c}"),
                 "calls/s")
    if pressures:
        emit("cpu_pressure_pct_at_starts_max", max(pressures), "%")
    if nopoll_runs and nobusy_runs:
        emit("latency_ratio_vs_erlang_no_busy_wait",
             mid(nopoll_runs, "p50_us") / mid(nobusy_runs, "p50_us"))
    if erlang_runs:
        top = max(concurrency)
        emit("throughput_ratio_vs_erlang", mid(shoal_runs, f"throughput_{top}")
             / mid(erlang_runs, f"throughput_{top}"))
        emit("latency_ratio_vs_erlang",
             mid(shoal_runs, "p50_us") / mid(erlang_runs, "p50_us"))


if __name__ == "__main__":
    main()
