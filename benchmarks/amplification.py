"""
Amplification before TLS: what a listener answers, and what it costs it,
when connections each send one 64 KiB write of empty header blocks.

    .venv/bin/python benchmarks/amplification.py [--connections N] [--no-read]

For each variant (stock Foolscap, ``tub.listenOn("tcp:...")``; sidetls,
``tub.listenOn(listener(TCP4ServerEndpoint(...)))``) a listener Tub runs in
a process of its own on 127.0.0.1, so its CPU time and memory are its
alone.  From this process, N attacking connections are opened at once,
each sending ``b"\\r\\n\\r\\n" * 16384`` in one write, and in the same
reactor turn an honest dialer starts a getReference + callRemote.

Reported per variant:

- bytes answered per attacking connection (min and max; each attacker
  reads until the listener closes; with ``--no-read`` none reads, as in
  the review's attack, and this is not measured);
- the listener's CPU seconds (utime + stime from /proc/PID/stat) from the
  first connection until every attacker was closed (``--no-read``: until
  the listener's CPU stood still for a second);
- the listener's RSS (VmRSS) before and after;
- how long the honest call took.

Only 127.0.0.1 is used.  Figures are measurements, not pass/fail
thresholds; the exit status is non-zero only if a listener process failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Optional

HOST = "127.0.0.1"
ATTACK = b"\r\n\r\n" * 16384
VARIANTS = ("stock", "sidetls")
_TICK = os.sysconf("SC_CLK_TCK")


# -- the listener, run as a child process ------------------------------------------


def serve(variant: str) -> None:
    """Listen, print the port and FURL as one JSON line, run until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Protocol
    from foolscap.api import Referenceable, Tub
    from foolscap.util import allocate_tcp_port

    from foolscap_sidetls import listener

    class Echo(Referenceable):
        def remote_echo(self, data: Any) -> Any:
            return data

    class StopOnEOF(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:  # type: ignore[attr-defined]
                reactor.stop()  # type: ignore[attr-defined]

    tub = Tub()
    tub.startService()
    port = allocate_tcp_port()
    # A backlog above the connection count: what is measured is the
    # listener's work per connection, not the kernel's accept queue.
    endpoint: Any = TCP4ServerEndpoint(reactor, port, backlog=1024, interface=HOST)
    if variant == "sidetls":
        endpoint = listener(endpoint)
    tub.listenOn(endpoint)
    tub.setLocation("tcp:%s:%d" % (HOST, port))
    furl = tub.registerReference(Echo(), "echo")

    def ready() -> None:
        if not all(l._lp is not None for l in tub.getListeners()):
            reactor.callLater(0.01, ready)  # type: ignore[attr-defined]
            return
        sys.stdout.write(json.dumps({"port": port, "furl": furl}) + "\n")
        sys.stdout.flush()

    stdio.StandardIO(StopOnEOF())
    reactor.callWhenRunning(ready)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


# -- measuring, in this process -----------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mib(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def measure(variant: str, connections: int, read: bool, timeout: float) -> dict[str, Any]:
    from twisted.internet import reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol
    from foolscap.api import Tub

    from foolscap_sidetls import install

    class Attacker(Protocol):
        answered = 0
        closed = False

        def connectionMade(self) -> None:
            if not read:
                self.transport.pauseProducing()
            self.transport.write(ATTACK)

        def dataReceived(self, data: bytes) -> None:
            self.answered += len(data)

        def connectionLost(self, reason: Any = None) -> None:
            self.closed = True

    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", variant],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        honest = Tub()
        if variant == "sidetls":
            install(honest)
        honest.startService()
        # Let the listener settle (imports done, first allocations made).
        await task.deferLater(reactor, 0.5, lambda: None)
        cpu0, rss0 = cpu_seconds(child.pid), rss_mib(child.pid)
        attackers = [Attacker() for _ in range(connections)]
        connecting = [
            TCP4ClientEndpoint(reactor, HOST, info["port"], timeout=30).connect(
                Factory.forProtocol(lambda a=a: a)  # type: ignore[misc]
            )
            for a in attackers
        ]
        started = reactor.seconds()  # type: ignore[attr-defined]
        honestTook: list[Optional[float]] = []

        def answered(result: Any) -> None:
            ok = result == b"honest"
            honestTook.append(reactor.seconds() - started if ok else None)  # type: ignore[attr-defined]

        honest.getReference(info["furl"]).addCallback(lambda r: r.callRemote("echo", b"honest")).addBoth(answered)
        deadline = started + timeout
        lastCPU, still = cpu0, 0.0
        while reactor.seconds() < deadline:  # type: ignore[attr-defined]
            await task.deferLater(reactor, 0.1, lambda: None)
            if read:
                if all(a.closed for a in attackers) and honestTook:
                    break
            else:
                cpu = cpu_seconds(child.pid)
                still = still + 0.1 if cpu == lastCPU else 0.0
                lastCPU = cpu
                if still >= 1.0 and honestTook:
                    break
        cpu1, rss1 = cpu_seconds(child.pid), rss_mib(child.pid)
        for d in connecting:
            d.addErrback(lambda f: None)
        for a in attackers:
            if a.transport is not None and not a.closed:
                a.transport.abortConnection()
        await honest.stopService()
        counts = [a.answered for a in attackers]
        return {
            "variant": variant,
            "connections": connections,
            "answered_min": min(counts) if read else None,
            "answered_max": max(counts) if read else None,
            "all_closed": all(a.closed for a in attackers) if read else None,
            "cpu_s": cpu1 - cpu0,
            "rss_before_mib": rss0,
            "rss_after_mib": rss1,
            "honest_s": honestTook[0] if honestTook else None,
            "timeout_s": timeout,
        }
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def table(results: list[dict[str, Any]], command: str) -> str:
    rows = [
        "| variant | connections | bytes answered per connection | listener CPU | listener RSS | honest call |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["answered_min"] is None:
            answered = "not read (--no-read)"
        elif r["answered_min"] == r["answered_max"]:
            answered = "{:,}".format(r["answered_min"])
        else:
            answered = "{:,} – {:,}".format(r["answered_min"], r["answered_max"])
        if r["all_closed"] is False:
            answered += " (some still open at the timeout)"
        honest = "%.2f s" % r["honest_s"] if r["honest_s"] is not None else "failed or timed out (%g s)" % r["timeout_s"]
        rows.append(
            "| %s | %d | %s | %.2f s | %.0f → %.0f MiB | %s |"
            % (r["variant"], r["connections"], answered, r["cpu_s"], r["rss_before_mib"], r["rss_after_mib"], honest)
        )
    return "\n".join(rows) + "\n\ncommand: `%s`\n" % (command,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=40, help="attacking connections (default 40)")
    parser.add_argument("--no-read", action="store_true", help="attackers never read (the review's attack)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of stock,sidetls")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on each measurement, seconds")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            parser.error("unknown variant %r; choose from %s" % (v, ", ".join(VARIANTS)))
    if args.connections < 1:
        parser.error("--connections must be at least 1, got %d" % (args.connections,))

    from twisted.internet import defer, task

    command = ".venv/bin/python benchmarks/amplification.py" + "".join(" " + a for a in sys.argv[1:])

    async def run(reactor: Any) -> None:
        results = []
        for v in variants:
            results.append(await measure(v, args.connections, not args.no_read, args.timeout))
        print(table(results, command))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"command": command, "results": results}, f, indent=1)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
