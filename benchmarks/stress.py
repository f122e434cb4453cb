"""
Stress runs too long for ``make test``: ``make stress`` (``python benchmarks/stress.py``).

Over loopback TCP only, against a sidetls listener in a process of its own
(so its descriptors and memory are its alone):

1. load: 500 dialer Tubs call one listener at the same moment;
2. cycles: 1,000 connect / call / disconnect cycles from one dialer, with
   the listener's and the dialer's open descriptors and RSS sampled every
   100 cycles;
3. flood: 500 connections that connect and send nothing, against a
   listener with ``max_negotiating=100, negotiation_timeout=10``, while 20
   honest dialers connect and call.

Prints the figures as a Markdown table (and writes it, with the command
and the machine, to ``--markdown PATH``, and the raw figures as JSON to
``--json PATH``); exits non-zero if any call failed or a descriptor was
left open.  Figures are measurements, not pass/fail thresholds.

Certificates: slot 0 is the listener's, 1 the control Tub's, 2 to
1 + max(dialers, 1) the load dialers' (the cycles dialer reuses slot 2),
and the flood's honest dialers come after those.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

HOST = "127.0.0.1"  # loopback only, on purpose


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def descriptors() -> tuple[int, int]:
    """(open descriptors, of which sockets) of this process."""
    total = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        total += 1
        sockets += target.startswith("socket:")
    return total, sockets


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- certificates ---------------------------------------------------------------


def _certificate(_: int) -> str:
    from foolscap import crypto

    pem = crypto.createCertificate().dumpPEM()
    return pem.decode("ascii") if isinstance(pem, bytes) else pem


def certificates(count: int, path: str) -> list[str]:
    """C{count} Tub certificates, kept in C{path} for the next run (they are not secrets)."""
    pems: list[str] = []
    if os.path.exists(path):
        with open(path) as f:
            pems = json.load(f)
    if len(pems) < count:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            pems += list(pool.map(_certificate, range(count - len(pems)), chunksize=8))
        with open(path, "w") as f:
            json.dump(pems, f)
        print("made %d certificates in %.1f s" % (count, time.perf_counter() - t0), flush=True)
    return pems[:count]


# -- the listener process -----------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Child process: one Tub on a sidetls listener; prints its FURL; runs until stdin closes."""
    raise_fd_limit()
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Protocol
    from twisted.logger import LogLevel, globalLogPublisher
    from foolscap.api import Referenceable, Tub

    import foolscap_sidetls

    with open(args.certs) as f:
        cert = json.load(f)[0]
    lines: dict[str, int] = {}

    def count(event: dict) -> None:
        if event.get("log_namespace") == "foolscap_sidetls" and event["log_level"] >= LogLevel.info:
            key = "closed by aborting" if "closed by aborting" in event["log_format"] else (
                "timeout" if "did not complete within" in str(event.get("why", "")) else (
                    "dropped for the cap" if "to admit a new connection" in str(event.get("why", "")) else "other"
                )
            )
            lines[key] = lines.get(key, 0) + 1

    globalLogPublisher.addObserver(count)
    tub = Tub(certData=cert)
    ep = foolscap_sidetls.listener(
        # A backlog that holds a burst of 500 (Twisted's default is 50; beyond
        # the backlog the kernel keeps connections from the listener at all).
        TCP4ServerEndpoint(reactor, args.port, backlog=1024, interface=HOST),
        negotiation_timeout=args.negotiation_timeout,
        max_negotiating=args.max_negotiating,
    )
    tub.listenOn(ep)
    tub.setLocation("tcp:%s:%d" % (HOST, args.port))

    class Target(Referenceable):
        def remote_echo(self, data: Any) -> Any:
            return data

        def remote_stats(self) -> dict:
            gc.collect()
            fds, sockets = descriptors()
            factory = ep.factory  # type: ignore[attr-defined]
            negotiating = factory.negotiating if factory is not None else None
            return {
                "fds": fds,
                "sockets": sockets,
                "rss_kib": rss_kib(),
                "brokers": len(tub.brokers),
                "connections": len(factory.protocols) if factory is not None else 0,
                "negotiating": None
                if negotiating is None
                else sum(1 for p in negotiating if p._stillNegotiating()),
                "lines": dict(lines),
            }

    tub.startService()
    furl = tub.registerReference(Target(), "stress")
    print("FURL %s" % (furl,), flush=True)
    done: Deferred = Deferred()

    class UntilStdinCloses(Protocol):
        def connectionLost(self, reason: Any) -> None:
            done.callback(None)

    stdio.StandardIO(UntilStdinCloses())
    done.addCallback(lambda _: tub.stopService()).addBoth(lambda _: reactor.stop())
    reactor.run()


class Listener:
    """A listener child process and a control connection to its stats."""

    def __init__(self, certs_path: str, **options: Any) -> None:
        from foolscap.util import allocate_tcp_port

        self.port = allocate_tcp_port()
        command = [sys.executable, __file__, "serve", "--certs", certs_path, "--port", str(self.port)]
        for key, value in options.items():
            if value is not None:
                command += ["--" + key.replace("_", "-"), str(value)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("FURL "):
            raise RuntimeError("listener did not start: %r" % (line,))
        self.furl = line.split()[1]
        self.control: Any = None

    async def connect(self, tub: Any) -> None:
        self.control = await tub.getReference(self.furl)

    async def stats(self) -> dict:
        return await self.control.callRemote("stats")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the driver ------------------------------------------------------------------


def make_tub(cert: str) -> Any:
    from foolscap.api import Tub

    import foolscap_sidetls

    tub = Tub(certData=cert)
    foolscap_sidetls.install(tub)
    tub.startService()
    return tub


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor, task

    await task.deferLater(reactor, seconds, lambda: None)


async def settle(listener: Listener, check: Any, timeout: float = 60.0) -> dict:
    """Poll the listener's stats until C{check(stats)} holds (or give up); return them."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await listener.stats()
        if check(stats) or time.monotonic() > deadline:
            return stats
        await sleep(0.2)


async def load(certs: list[str], certs_path: str, dialers: int, rounds: int = 2) -> dict:
    """C{dialers} Tubs at once, C{rounds} times against the same listener."""
    from twisted.internet import defer

    listener = Listener(certs_path)
    control = make_tub(certs[1])
    await listener.connect(control)
    before = await listener.stats()
    done = []
    for round in range(rounds):
        tubs = [make_tub(certs[2 + i]) for i in range(dialers)]
        t0 = time.perf_counter()

        async def one(i: int, tub: Any) -> bool:
            rref = await tub.getReference(listener.furl)
            return bool((await rref.callRemote("echo", i)) == i)

        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(one(i, t)) for i, t in enumerate(tubs)], consumeErrors=True
        )
        elapsed = time.perf_counter() - t0
        peak = await listener.stats()
        await defer.gatherResults([t.stopService() for t in tubs])
        after = await settle(listener, lambda s: s["brokers"] == 1 and s["sockets"] <= before["sockets"])
        done.append({"served": sum(results), "seconds": elapsed, "peak": peak, "after": after})
        print("  round %d: %d served in %.1f s" % (round + 1, sum(results), elapsed), flush=True)
    await control.stopService()
    listener.stop()
    return {"dialers": dialers, "before": before, "rounds": done}


def sampled(cycle: int, count: int) -> bool:
    """Cycles whose figures are kept: the first, every 100th, the reference one and the last."""
    return cycle == 1 or cycle % 100 == 0 or cycle == reference_cycle(count) or cycle == count


def reference_cycle(count: int) -> int:
    """
    The cycle the last one is compared with: 100, once start-up costs are
    paid; half-way through a run shorter than 200 cycles.
    """
    return min(100, max(1, count // 2))


async def cycles(certs: list[str], certs_path: str, count: int) -> dict:
    listener = Listener(certs_path)
    control = make_tub(certs[1])
    await listener.connect(control)
    tub = make_tub(certs[2])
    samples = []
    failures = 0
    t0 = time.perf_counter()
    for cycle in range(1, count + 1):
        try:
            rref = await tub.getReference(listener.furl)
            if await rref.callRemote("echo", cycle) != cycle:
                failures += 1
            from twisted.internet.defer import Deferred

            gone: Deferred = Deferred()
            rref.notifyOnDisconnect(gone.callback, None)
            rref.tracker.broker.transport.loseConnection()
            await gone
        except Exception:
            failures += 1
        if sampled(cycle, count):
            stats = await settle(listener, lambda s: s["brokers"] == 1, 10)
            gc.collect()
            fds, sockets = descriptors()
            samples.append(
                {
                    "cycle": cycle,
                    "listener_fds": stats["fds"],
                    "listener_rss_kib": stats["rss_kib"],
                    "dialer_fds": fds,
                    "dialer_rss_kib": rss_kib(),
                }
            )
            print("  cycle %4d: listener %d fds %d KiB, dialer %d fds %d KiB" % (
                cycle, stats["fds"], stats["rss_kib"], fds, rss_kib()), flush=True)
    elapsed = time.perf_counter() - t0
    await tub.stopService()
    await control.stopService()
    listener.stop()
    return {"cycles": count, "failures": failures, "seconds": elapsed, "samples": samples}


async def flood(
    certs: list[str], certs_path: str, silent: int, honest: int, cap: int, timeout: float, first_cert: int
) -> dict:
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol

    listener = Listener(certs_path, max_negotiating=cap, negotiation_timeout=timeout)
    control = make_tub(certs[1])
    await listener.connect(control)
    before = await listener.stats()
    lost_at: list[float] = []

    class Silent(Protocol):
        def connectionLost(self, reason: Any) -> None:
            lost_at.append(time.monotonic())

    ep = TCP4ClientEndpoint(reactor, HOST, listener.port)
    t0 = time.monotonic()
    attempts = await defer.DeferredList(
        [ep.connect(Factory.forProtocol(Silent)) for _ in range(silent)], consumeErrors=True
    )
    connected = time.monotonic()
    made = [protocol for ok, protocol in attempts if ok]
    # A connection the listener dropped for the cap before this end saw it
    # established fails to connect with ECONNRESET.
    reset = [f for ok, f in attempts if not ok]
    held = await listener.stats()
    tubs = [make_tub(certs[first_cert + i]) for i in range(honest)]

    async def one(i: int, tub: Any) -> bool:
        rref = await tub.getReference(listener.furl)
        return bool((await rref.callRemote("echo", i)) == i)

    honest_t0 = time.monotonic()
    results = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(one(i, t)) for i, t in enumerate(tubs)], consumeErrors=True
    )
    honest_seconds = time.monotonic() - honest_t0
    during = await listener.stats()
    while len(lost_at) < len(made) and time.monotonic() - connected < timeout * 3:
        await sleep(0.1)
    all_dropped = (max(lost_at) if lost_at else connected) - t0 if len(lost_at) == len(made) else None
    await defer.gatherResults([t.stopService() for t in tubs])
    after = await settle(listener, lambda s: s["brokers"] == 1 and s["sockets"] <= before["sockets"])
    await control.stopService()
    listener.stop()
    return {
        "silent": silent,
        "established": len(made),
        "reset_while_connecting": len(reset),
        "reset_reasons": sorted({f.getErrorMessage() for f in reset}),
        "connect_seconds": connected - t0,
        "cap": cap,
        "negotiation_timeout": timeout,
        "listener_held_after_flood": held,
        "honest": honest,
        "honest_served": sum(results),
        "honest_seconds": honest_seconds,
        "during": during,
        "silent_dropped": len(lost_at),
        "all_dropped_after_s": all_dropped,
        "before": before,
        "after": after,
    }


def report(results: dict) -> tuple[str, bool]:
    ok = True
    rows = []
    if "load" in results:
        r = results["load"]
        for i, one in enumerate(r["rounds"]):
            ok &= one["served"] == r["dialers"] and one["after"]["sockets"] == r["before"]["sockets"]
            rows.append(
                "| load: %d dialers at once (round %d of %d, same listener) | %d/%d served in %.1f s; listener "
                "sockets %d before, %d at peak, %d after; listener RSS %d KiB before, %d at peak, %d after |"
                % (r["dialers"], i + 1, len(r["rounds"]), one["served"], r["dialers"], one["seconds"],
                   r["before"]["sockets"], one["peak"]["sockets"], one["after"]["sockets"], r["before"]["rss_kib"],
                   one["peak"]["rss_kib"], one["after"]["rss_kib"])
            )
    if "cycles" in results:
        r = results["cycles"]
        s = {x["cycle"]: x for x in r["samples"]}
        reference = reference_cycle(r["cycles"])
        first, last = s[reference], s[r["cycles"]]
        ok &= r["failures"] == 0 and first["listener_fds"] == last["listener_fds"] and first["dialer_fds"] == last["dialer_fds"]
        rows.append(
            "| cycles: %d connect/call/disconnect | %d failed; %.0f cycles/s; listener fds %d at cycle %d, %d at %d, "
            "RSS %d -> %d KiB; dialer fds %d -> %d, RSS %d -> %d KiB |"
            % (r["cycles"], r["failures"], r["cycles"] / r["seconds"], first["listener_fds"], reference,
               last["listener_fds"], r["cycles"], first["listener_rss_kib"], last["listener_rss_kib"],
               first["dialer_fds"], last["dialer_fds"], first["dialer_rss_kib"], last["dialer_rss_kib"])
        )
    for name in ("flood", "flood-uncapped"):
        if name not in results:
            continue
        r = results[name]
        ok &= (
            r["honest_served"] == r["honest"]
            and r["silent_dropped"] == r["established"]
            and r["established"] + r["reset_while_connecting"] == r["silent"]
            and r["after"]["sockets"] == r["before"]["sockets"]
        )
        lines = r["after"]["lines"]
        if r["all_dropped_after_s"] is not None:
            dropped = "all %d established dropped within %.1f s" % (r["established"], r["all_dropped_after_s"])
        else:
            dropped = "%d of the %d established dropped (the rest still open after %g s)" % (
                r["silent_dropped"], r["established"], 3 * r["negotiation_timeout"])
        rows.append(
            "| flood: %d silent connections, max_negotiating=%s, negotiation_timeout=%g s | listener held %d "
            "(%s); %d/%d honest dialers served meanwhile in %.1f s; %s "
            "(%d reset before the dialer saw them connect; logged: %d dropped for the cap, %d by the timeout); "
            "listener sockets %d before, %d after |"
            % (r["silent"], r["cap"], r["negotiation_timeout"], r["listener_held_after_flood"]["connections"],
               "no cap, so not counted" if r["listener_held_after_flood"]["negotiating"] is None
               else "%d negotiating" % r["listener_held_after_flood"]["negotiating"], r["honest_served"], r["honest"], r["honest_seconds"],
               dropped, r["reset_while_connecting"],
               lines.get("dropped for the cap", 0), lines.get("timeout", 0), r["before"]["sockets"],
               r["after"]["sockets"])
        )
    table = "| case | figures |\n| --- | --- |\n" + "\n".join(rows)
    return table, ok


def markdown(table: str, ok: bool, started: str) -> str:
    """The table as a report: what ran, where, when, and whether every check held."""
    import foolscap
    import twisted

    command = " ".join(["python", "benchmarks/stress.py"] + sys.argv[1:])
    return (
        "## foolscap-sidetls stress run\n\n"
        "`%s`, started %s, on %s with %d CPUs, Python %s, Twisted %s, Foolscap %s; "
        "loopback TCP only, the listener in a process of its own.\n\n%s\n\n"
        "Every call served and every descriptor closed: %s.\n"
        % (
            command,
            started,
            platform.platform(),
            os.cpu_count() or 0,
            platform.python_version(),
            twisted.__version__,
            foolscap.__version__,
            table,
            "yes" if ok else "NO",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve")
    s.add_argument("--certs", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--max-negotiating", type=int)
    s.add_argument("--negotiation-timeout", type=float)
    parser.add_argument("--dialers", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--silent", type=int, default=500)
    parser.add_argument("--honest", type=int, default=20)
    parser.add_argument("--cap", type=int, default=100)
    parser.add_argument("--negotiation-timeout", type=float, default=10.0)
    parser.add_argument("--only", choices=["load", "cycles", "flood", "flood-uncapped"], action="append")
    parser.add_argument("--certs-cache", default=os.path.join(tempfile.gettempdir(), "sidetls-stress-certs.json"))
    parser.add_argument("--json", help="write the raw figures here, as JSON")
    parser.add_argument("--markdown", help="write the table here, with the command and the machine")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return
    for name in ("dialers", "cycles", "silent", "honest", "cap"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1, got %d" % (name, getattr(args, name)))
    if not args.negotiation_timeout > 0:
        parser.error("--negotiation-timeout must be more than 0 seconds, got %g" % (args.negotiation_timeout,))
    raise_fd_limit()
    first_honest = 2 + args.dialers
    certs = certificates(first_honest + args.honest, args.certs_cache)
    from twisted.internet import defer, task

    results: dict = {}
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    async def run(reactor: Any) -> None:
        only = args.only or ["load", "cycles", "flood", "flood-uncapped"]
        if "load" in only:
            print("load: %d dialers at once" % args.dialers, flush=True)
            results["load"] = await load(certs, args.certs_cache, args.dialers)
        if "cycles" in only:
            print("cycles: %d" % args.cycles, flush=True)
            results["cycles"] = await cycles(certs, args.certs_cache, args.cycles)
        if "flood" in only:
            print("flood: %d silent connections" % args.silent, flush=True)
            results["flood"] = await flood(
                certs, args.certs_cache, args.silent, args.honest, args.cap, args.negotiation_timeout, first_honest
            )
        if "flood-uncapped" in only:
            print("flood without max_negotiating: %d silent connections" % args.silent, flush=True)
            results["flood-uncapped"] = await flood(
                certs, args.certs_cache, args.silent, args.honest, None, args.negotiation_timeout, first_honest
            )
        table, ok = report(results)
        print("\n" + table)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(markdown(table, ok, started))
        if not ok:
            raise SystemExit("stress: a call failed or a descriptor was left open (see above)")

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
