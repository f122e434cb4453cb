"""
One benchmark process: a listener, or a dialer running one workload against
a listener in another process.  run.py starts a fresh pair of processes for
every measurement, so no measurement inherits another's heap, caches or
reactor state.

    _worker.py listen  --variant V --certs FILE [--profile OUT]
    _worker.py bulk    --variant V --certs FILE --furl F --mib N --inflight K
    _worker.py connect --variant V --certs FILE --furl F --count N
    _worker.py idle    --variant V --certs FILE --furl F --count N

The listener prints "FURL <furl>" once it listens and runs until its stdin
closes.  A dialer prints one line "RESULT <json>" and exits.

Certificates come pre-generated from the driver (a JSON list of PEM
strings): index 0 is the listener's, 1 the dialer's control Tub, 2.. one per
measured dialer Tub.  Generating a 2048-bit RSA key costs ~100 ms, which
would swamp the connection setup being measured.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import sys
import time
import warnings

from zope.interface import implementer
from twisted.internet import task
from twisted.internet.endpoints import serverFromString
from twisted.internet.defer import (
    Deferred,
    DeferredSemaphore,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.protocol import Protocol
from twisted.internet.stdio import StandardIO
from foolscap.api import Referenceable, Tub

import foolscap_sidetls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    HOST,
    LISTEN_ON,
    PROBE,
    SIDETLS_API,
    STOCK,
    VARIANTS,
    RIBench,
    load_certs,
    machine_cpu,
    raise_fd_limit,
    rss_kib,
)

MiB = 2**20


class BenchmarkError(Exception):
    pass


# -- listener ---------------------------------------------------------------


@implementer(RIBench)
class Target(Referenceable):
    def __init__(self, tub: Tub, profile_path: str | None) -> None:
        self.tub = tub
        self.profile_path = profile_path
        self.profiler: cProfile.Profile | None = None
        self.received = 0
        self.puts = 0
        self.pings = 0
        self.listen_cpu_s = 0.0
        self.gc = _GCTimer()
        self.ready_rss_kib = 0

    def remote_put(self, data: bytes):
        self.received += len(data)
        self.puts += 1
        return (len(data), data[:PROBE], data[-PROBE:])

    def remote_ping(self) -> int:
        self.pings += 1
        return 1

    def remote_stats(self):
        # CPU time is read on both sides of the collection, so a window
        # between two calls can leave out both collections: a full
        # collection costs in proportion to the heap, not to the workload.
        cpu = time.process_time()
        gc_seconds, gc_counts = list(self.gc.seconds), list(self.gc.counts)
        gc.collect()
        # ... and the collection is left out of the collector's totals.
        self.gc.seconds, self.gc.counts = gc_seconds, gc_counts
        return {
            "gc_s": gc_seconds,
            "gc_counts": gc_counts,
            "rss_kib": rss_kib(),
            "cpu_s": cpu,
            "cpu_after_gc_s": time.process_time(),
            "connections": len(self.tub.brokers),
            "received": self.received,
            "puts": self.puts,
            "pings": self.pings,
            "listen_cpu_s": self.listen_cpu_s,
            "ready_rss_kib": self.ready_rss_kib,
        }

    def remote_profile(self, on: bool) -> bool:
        if self.profile_path is None:
            return False
        if on:
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
        elif self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile_path)
            self.profiler = None
        return True


class _GCTimer:
    """Time spent in the cyclic garbage collector, per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.process_time() - self._started
            self.counts[generation] += 1


class _UntilStdinCloses(Protocol):
    def __init__(self, done: Deferred) -> None:
        self.done = done

    def connectionLost(self, reason) -> None:
        self.done.callback(None)


@inlineCallbacks
def listen(reactor, args):
    raise_fd_limit()
    certs = load_certs(args.certs)
    tub = Tub(certData=certs[0])
    cpu0 = time.process_time()
    if args.variant == SIDETLS_API:
        endpoint = foolscap_sidetls.listener(
            serverFromString(reactor, LISTEN_ON[args.variant])
        )
        listener = tub.listenOn(endpoint)
    else:
        listener = tub.listenOn(LISTEN_ON[args.variant])
    tub.startService()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        port = listener.getPortnum()
    target = Target(tub, args.profile)
    # What it cost to start listening (parsing the description included).
    target.listen_cpu_s = time.process_time() - cpu0
    target.ready_rss_kib = rss_kib()
    tub.setLocation("tcp:%s:%d" % (HOST, port))
    furl = tub.registerReference(target, "bench")
    sys.stdout.write("FURL %s\n" % (furl,))
    sys.stdout.flush()
    done = Deferred()
    StandardIO(_UntilStdinCloses(done), reactor=reactor)
    yield done


# -- dialers ----------------------------------------------------------------


def make_tub(cert: bytes, variant: str) -> Tub:
    tub = Tub(certData=cert)
    if variant != STOCK:
        foolscap_sidetls.install(tub)
    tub.startService()
    return tub


def sleep(reactor, seconds: float) -> Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def connect_once(tub: Tub, furl: str):
    """getReference + one small call: one fresh, authenticated connection."""
    rref = yield tub.getReference(furl)
    answer = yield rref.callRemote("ping")
    if answer != 1:
        raise BenchmarkError("ping answered %r" % (answer,))
    return rref


class Profiler:
    """The dialer's own cProfile around the timed part, plus the listener's
    (started and stopped over the control connection)."""

    def __init__(self, path: str | None, control) -> None:
        self.path = path
        self.control = control
        self.profiler: cProfile.Profile | None = None

    @inlineCallbacks
    def start(self):
        if self.path:
            yield self.control.callRemote("profile", True)
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()

    @inlineCallbacks
    def stop(self):
        if self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(self.path)
            yield self.control.callRemote("profile", False)


def _other_load(machine0, machine1, ours: float, elapsed: float) -> dict:
    """CPU the rest of the machine used while we were timing, in cores."""
    busy = machine1[0] - machine0[0]
    steal = machine1[1] - machine0[1]
    return {
        "other_cores": max(0.0, busy - ours) / elapsed,
        "steal_cores": steal / elapsed,
    }


def _gc_delta(before: dict, after: dict) -> tuple[list[float], list[int]]:
    """The listener's time (ms) and count of collections, per generation."""
    return (
        [1000 * (a - b) for a, b in zip(after["gc_s"], before["gc_s"])],
        [a - b for a, b in zip(after["gc_counts"], before["gc_counts"])],
    )


@inlineCallbacks
def bulk(reactor, args, certs, control):
    """(a): args.mib calls of 1 MiB each, args.inflight outstanding."""
    tub = make_tub(certs[2], args.variant)
    rref = yield tub.getReference(args.furl)
    filler = os.urandom(MiB - 2 * PROBE)

    def put(i: int) -> Deferred:
        # Every argument is distinct at both ends, so the echoed head and
        # tail prove that this call's megabyte arrived whole.
        head = b"H%015d" % (i,)
        tail = b"T%015d" % (i,)
        data = head + filler + tail

        def check(answer):
            length, h, t = answer
            if (length, h, t) != (MiB, head, tail):
                raise BenchmarkError("call %d: bad echo %r" % (i, (length, h, t)))

        return rref.callRemote("put", data).addCallback(check)

    # Warm-up: allocator, Banana buffers, TCP windows.
    warm = 2 * args.inflight
    yield gatherResults([put(-1 - k) for k in range(warm)], consumeErrors=True)
    before = yield control.callRemote("stats")

    calls = iter(range(args.mib))

    @inlineCallbacks
    def lane():
        for i in calls:
            yield put(i)

    profiler = Profiler(args.profile, control)
    yield profiler.start()
    machine0 = machine_cpu()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    yield gatherResults([lane() for _ in range(args.inflight)], consumeErrors=True)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    machine1 = machine_cpu()
    yield profiler.stop()

    after = yield control.callRemote("stats")
    received = after["received"] - before["received"]
    if received != args.mib * MiB or after["puts"] - before["puts"] != args.mib:
        raise BenchmarkError(
            "listener received %d bytes in %d calls, expected %d in %d"
            % (received, after["puts"] - before["puts"], args.mib * MiB, args.mib)
        )
    listener_cpu = after["cpu_s"] - before["cpu_after_gc_s"]
    return {
        **_other_load(machine0, machine1, cpu + listener_cpu, elapsed),
        "mib_per_s": args.mib / elapsed,
        "seconds": elapsed,
        "bytes": received,
        # CPU of both processes per MiB: less sensitive than wall-clock time
        # to other load on the machine.  (The listener's includes the two
        # stats calls around the timed part.)
        "cpu_ms_per_mib": 1000 * (cpu + listener_cpu) / args.mib,
        "listener_cpu_ms_per_mib": 1000 * listener_cpu / args.mib,
        "dialer_cpu_ms_per_mib": 1000 * cpu / args.mib,
        "listener_gc_ms": _gc_delta(before, after)[0],
        "listener_gc_counts": _gc_delta(before, after)[1],
    }


@inlineCallbacks
def connect(reactor, args, certs, control):
    """(b): args.count fresh dialer Tubs, one after another, each doing
    getReference + one call, then disconnecting."""
    warm = 5
    needed = 2 + warm + args.count
    if len(certs) < needed:
        raise BenchmarkError("need %d certificates, have %d" % (needed, len(certs)))
    # Tubs are built (certificate parsed, service started) before timing:
    # the measurement is the connection, not the Tub.
    tubs = [make_tub(cert, args.variant) for cert in certs[2:needed]]
    for tub in tubs[:warm]:
        yield connect_once(tub, args.furl)
        yield tub.stopService()
    tubs = tubs[warm:]
    before = yield control.callRemote("stats")

    profiler = Profiler(args.profile, control)
    yield profiler.start()
    each = []
    machine0 = machine_cpu()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for tub in tubs:
        t1 = time.perf_counter()
        yield connect_once(tub, args.furl)
        # stopService fires once the connection is closed.
        yield tub.stopService()
        each.append(time.perf_counter() - t1)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    machine1 = machine_cpu()
    yield profiler.stop()

    after = yield control.callRemote("stats")
    if after["pings"] - before["pings"] != args.count:
        raise BenchmarkError(
            "listener answered %d pings, expected %d"
            % (after["pings"] - before["pings"], args.count)
        )
    each.sort()
    listener_cpu = after["cpu_s"] - before["cpu_after_gc_s"]
    return {
        **_other_load(machine0, machine1, cpu + listener_cpu, elapsed),
        "conn_per_s": args.count / elapsed,
        "seconds": elapsed,
        "median_ms": 1000 * each[len(each) // 2],
        "max_ms": 1000 * each[-1],
        "cpu_ms_per_conn": 1000 * (cpu + listener_cpu) / args.count,
        "dialer_cpu_ms_per_conn": 1000 * cpu / args.count,
        "listener_cpu_ms_per_conn": 1000 * listener_cpu / args.count,
        "listener_gc_ms": _gc_delta(before, after)[0],
        "listener_gc_counts": _gc_delta(before, after)[1],
    }


@inlineCallbacks
def idle(reactor, args, certs, control):
    """(c): RSS growth per idle connection, at args.count connections.

    Measured in the listener process: it holds one Tub and one connection
    per dialer, so its growth is connection state only.  The dialer
    process's own growth (its Tubs were all built before the baseline, so
    it too is connection state only) is reported as well.
    """
    warm = 20
    needed = 2 + warm + args.count
    if len(certs) < needed:
        raise BenchmarkError("need %d certificates, have %d" % (needed, len(certs)))
    tubs = [make_tub(cert, args.variant) for cert in certs[2:needed]]
    # Warm-up connections, opened and closed before the baseline, so lazy
    # imports, Foolscap's log buffers and allocator pools are not counted.
    for tub in tubs[:warm]:
        yield connect_once(tub, args.furl)
        yield tub.stopService()
    tubs = tubs[warm:]
    del certs
    yield sleep(reactor, 0.5)
    gc.collect()
    before = yield control.callRemote("stats")
    mine_before = rss_kib()

    semaphore = DeferredSemaphore(8)
    refs = yield gatherResults(
        [semaphore.run(connect_once, tub, args.furl) for tub in tubs],
        consumeErrors=True,
    )
    # Let closes of half-finished work, deferred writes and timers settle.
    yield sleep(reactor, 1.0)
    gc.collect()
    after = yield control.callRemote("stats")
    mine_after = rss_kib()
    opened = after["connections"] - before["connections"]
    if opened != args.count or len(refs) != args.count:
        raise BenchmarkError(
            "listener holds %d more connections, expected %d" % (opened, args.count)
        )
    return {
        "listener_kib_per_conn": (after["rss_kib"] - before["rss_kib"]) / args.count,
        "dialer_kib_per_conn": (mine_after - mine_before) / args.count,
        "listener_rss_before_kib": before["rss_kib"],
        "listener_rss_after_kib": after["rss_kib"],
        "connections": after["connections"],
    }


WORKLOADS = {"bulk": bulk, "connect": connect, "idle": idle}


@inlineCallbacks
def dial(reactor, args):
    raise_fd_limit(needed=2 * getattr(args, "count", 0) + 256)
    certs = load_certs(args.certs)
    control_tub = make_tub(certs[1], args.variant)
    control = yield control_tub.getReference(args.furl)
    result = yield WORKLOADS[args.command](reactor, args, certs, control)
    final = yield control.callRemote("stats")
    result["listener_listen_ms"] = 1000 * final["listen_cpu_s"]
    result["listener_ready_mib"] = final["ready_rss_kib"] / 1024
    result["variant"] = args.variant
    sys.stdout.write("RESULT %s\n" % (json.dumps(result),))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ["listen", *WORKLOADS]:
        p = sub.add_parser(name)
        p.add_argument("--variant", choices=VARIANTS, required=True)
        p.add_argument("--certs", required=True)
        p.add_argument("--profile", help="write cProfile stats of the timed part here")
        if name != "listen":
            p.add_argument("--furl", required=True)
        if name == "bulk":
            p.add_argument("--mib", type=int, default=128)
            p.add_argument("--inflight", type=int, default=4)
        if name in ("connect", "idle"):
            p.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    if args.command == "listen":
        task.react(listen, (args,))
    else:
        task.react(dial, (args,))


if __name__ == "__main__":
    main()
