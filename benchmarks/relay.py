"""
Relayed against direct Foolscap throughput, over loopback TCP, in one run.

    .venv/bin/python benchmarks/relay.py [--rounds N] [--mib M]

Each round measures, back to back:

  direct   stock Foolscap: a listener Tub on 127.0.0.1 and a dialer Tub;
  relayed  the same listener code as a hidden Tub that never listens
           (foolscap_sidetls.relay.listener), a relay process
           (foolscap_sidetls.relay.RelayServer), and the same *stock*
           dialer, which reaches the hidden Tub with an ordinary tcp hint.

Every measurement uses fresh processes: the listener and the dialer are
benchmarks/_worker.py's ("listen" and "bulk": 1 MiB callRemote arguments,
4 in flight, every echo checked); the relay and the hidden listener are
this file's "_relay" and "_hidden" roles.  The summary is the median over
rounds of relayed/direct MiB/s, each round's ratio taken from the two
measurements made next to each other, against the target >= 0.5.

Only 127.0.0.1 is used.  Nothing asserts on timings: the ratio is a
figure, not a verdict.  The exit status is non-zero only when a
measurement process failed (did not start, exited with an error, or hung).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_worker.py")
HOST = "127.0.0.1"
TARGET = 0.5
#: A hang guard for one process, not a measurement.
TIMEOUT = 300

#: Certificate slots in the JSON file: 0 the listener (direct or hidden),
#: 1 and 2 the dialer's Tubs (as _worker.py expects), 3 the relay.
RELAY_CERT = 3


# -- the two extra roles, run as child processes ----------------------------


def _run_relay(args: argparse.Namespace) -> None:
    from twisted.internet import defer, task
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.ssl import PrivateCertificate

    from foolscap_sidetls.relay import RelayServer

    sys.path.insert(0, HERE)
    from _common import load_certs

    @defer.inlineCallbacks
    def main(reactor: Any) -> Any:
        certs = load_certs(args.certs)
        server = RelayServer(PrivateCertificate.loadPEM(certs[RELAY_CERT]))
        port = yield server.listen(TCP4ServerEndpoint(reactor, 0, interface=HOST))
        cpu0 = time.process_time()
        print("URL " + server.url("tcp:%s:%d" % (HOST, port.getHost().port)), flush=True)
        yield _untilStdinCloses(reactor)
        print("CPU %f RELAYED %d" % (time.process_time() - cpu0, server.relayed), flush=True)

    task.react(main)


def _run_hidden(args: argparse.Namespace) -> None:
    from twisted.internet import defer, task
    from foolscap.api import Tub

    from foolscap_sidetls import relay

    sys.path.insert(0, HERE)
    from _common import load_certs
    from _worker import Target

    @defer.inlineCallbacks
    def main(reactor: Any) -> Any:
        certs = load_certs(args.certs)
        tub = Tub(certData=certs[0])
        cpu0 = time.process_time()
        endpoint = relay.listener(args.url, tub)
        tub.listenOn(endpoint)
        tub.startService()
        tub.setLocation(*relay.location_hints(args.url))
        target = Target(tub, None)
        target.listen_cpu_s = time.process_time() - cpu0
        furl = tub.registerReference(target, "bench")
        yield endpoint.when_registered()
        print("FURL " + furl, flush=True)
        yield _untilStdinCloses(reactor)

    task.react(main)


def _untilStdinCloses(reactor: Any) -> Any:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Protocol
    from twisted.internet.stdio import StandardIO

    done: Deferred[None] = Deferred()

    class Watch(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            done.callback(None)

    StandardIO(Watch(), reactor=reactor)
    return done


# -- the driver ---------------------------------------------------------------


class Failed(Exception):
    pass


class _Child:
    """A measurement process serving until its stdin closes; its stderr kept in a file."""

    def __init__(self, cmd: list[str], expect: str, what: str) -> None:
        self.what = what
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True
            )
        except BaseException:
            self.err.close()
            raise
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(expect + " "):
            self.proc.kill()
            self.proc.wait()
            raise Failed("%s did not start: %r\n%s" % (what, line, self._stderr()))
        self.value = line.split(" ", 1)[1].strip()

    def _stderr(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read().decode(errors="replace")
        finally:
            self.err.close()

    def stop(self) -> str:
        """Close its stdin and collect the rest of its output; L{Failed} unless it exited 0."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        hung = False
        try:
            rest = proc.stdout.read()
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rest, hung = "", True
        proc.stdout.close()
        stderr = self._stderr()
        if hung:
            raise Failed("%s did not exit within 60 s of its stdin closing\n%s" % (self.what, stderr))
        if proc.returncode != 0:
            raise Failed("%s exited with status %s\n%s" % (self.what, proc.returncode, stderr))
        return rest


def _bulk(furl: str, certs: str, mib: int) -> dict:
    cmd = [sys.executable, WORKER, "bulk", "--variant", "stock", "--certs", certs,
           "--furl", furl, "--mib", str(mib), "--inflight", "4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    results = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        raise Failed("dialer failed (exit %s):\n%s\n%s" % (done.returncode, done.stdout, done.stderr))
    return json.loads(results[-1][len("RESULT "):])


def measure_direct(certs: str, mib: int) -> dict:
    listener = _Child(
        [sys.executable, WORKER, "listen", "--variant", "stock", "--certs", certs],
        "FURL", "direct listener",
    )
    try:
        result = _bulk(listener.value, certs, mib)
    finally:
        listener.stop()
    return result


def measure_relayed(certs: str, mib: int) -> dict:
    me = os.path.abspath(__file__)
    relay = _Child([sys.executable, me, "_relay", "--certs", certs], "URL", "relay")
    hidden: Optional[_Child] = None
    try:
        hidden = _Child(
            [sys.executable, me, "_hidden", "--certs", certs, "--url", relay.value],
            "FURL", "hidden listener",
        )
        furl = hidden.value
        if "@tcp:%s:" % HOST not in furl:
            raise Failed("the hidden Tub's FURL does not point at the relay: %s" % furl)
        result = _bulk(furl, certs, mib)
    finally:
        try:
            if hidden is not None:
                hidden.stop()
        finally:
            tail = relay.stop()
    fields = tail.split()
    if len(fields) >= 4 and fields[0] == "CPU":
        result["relay_cpu_ms_per_mib"] = 1000 * float(fields[1]) / mib
        result["relay_relayed"] = int(fields[3])
    return result


def generate_certificates(path: str, count: int = 4) -> None:
    from foolscap import crypto

    pems = []
    for _ in range(count):
        pem = crypto.createCertificate().dumpPEM()
        pems.append(pem.decode("ascii") if isinstance(pem, bytes) else pem)
    with open(path, "w") as f:
        json.dump(pems, f)


def drive(args: argparse.Namespace) -> int:
    rows: list[tuple[int, dict, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        certs = os.path.join(tmp, "certs.json")
        generate_certificates(certs)
        print("relayed vs direct: %d rounds of %d MiB, 1 MiB calls, 4 in flight, "
              "stock dialer, loopback TCP" % (args.rounds, args.mib))
        print("%5s  %14s  %14s  %6s  %22s" % (
            "round", "direct MiB/s", "relayed MiB/s", "ratio", "relay CPU ms/MiB"))
        for n in range(1, args.rounds + 1):
            try:
                direct = measure_direct(certs, args.mib)
                relayed = measure_relayed(certs, args.mib)
            except Failed as e:
                print("round %d: a measurement process failed: %s" % (n, e), file=sys.stderr)
                return 1
            rows.append((n, direct, relayed))
            print("%5d  %14.1f  %14.1f  %6.3f  %22.2f" % (
                n, direct["mib_per_s"], relayed["mib_per_s"],
                relayed["mib_per_s"] / direct["mib_per_s"],
                relayed.get("relay_cpu_ms_per_mib", float("nan"))), flush=True)
    ratios = [r["mib_per_s"] / d["mib_per_s"] for _, d, r in rows]
    direct_median = statistics.median(d["mib_per_s"] for _, d, _ in rows)
    relayed_median = statistics.median(r["mib_per_s"] for _, _, r in rows)
    ratio = statistics.median(ratios)
    cpu_direct = statistics.median(d["cpu_ms_per_mib"] for _, d, _ in rows)
    cpu_relayed = statistics.median(
        r["cpu_ms_per_mib"] + r.get("relay_cpu_ms_per_mib", 0.0) for _, _, r in rows)
    print()
    print("median direct  %.1f MiB/s, CPU %.2f ms/MiB (dialer + listener)"
          % (direct_median, cpu_direct))
    print("median relayed %.1f MiB/s, CPU %.2f ms/MiB (dialer + hidden + relay)"
          % (relayed_median, cpu_relayed))
    print("CPU per MiB, relayed/direct: %.3f (a CPU-bound machine's throughput ratio "
          "would be about %.3f)" % (cpu_relayed / cpu_direct, cpu_direct / cpu_relayed))
    print("relayed/direct: median of per-round ratios %.3f (range %.3f-%.3f); "
          "target >= %.1f: %s" % (ratio, min(ratios), max(ratios), TARGET,
                                  "met" if ratio >= TARGET else "NOT met"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="the benchmark (the default)")
    for p in (parser, run):
        p.add_argument("--rounds", type=int, default=5)
        p.add_argument("--mib", type=int, default=64)
    r = sub.add_parser("_relay")
    r.add_argument("--certs", required=True)
    h = sub.add_parser("_hidden")
    h.add_argument("--certs", required=True)
    h.add_argument("--url", required=True)
    args = parser.parse_args()
    if args.command == "_relay":
        _run_relay(args)
        return 0
    if args.command == "_hidden":
        _run_hidden(args)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
