"""
Pieces shared by the benchmark driver (run.py) and its worker processes
(_worker.py): the remote interface, the variants, and process helpers.
"""

from __future__ import annotations

import json
import os
import resource

from foolscap.api import RemoteInterface
from foolscap.constraint import Any, ByteStringConstraint
from foolscap.schema import TupleOf

STOCK = "stock"
SIDETLS = "sidetls"
#: sidetls with the listener built by the Python API,
#: C{listener(serverFromString(reactor, "tcp:..."))}, instead of from the
#: C{"sidetls:..."} string.  Twisted resolves a non-builtin prefix by
#: loading endpoint-parser plugins until one matches, and txi2p's (installed
#: with the [i2p] extra) comes first and takes seconds of CPU and ~45 MiB to
#: import.  This variant separates that one-off cost from the wrapper's.
SIDETLS_API = "sidetls-api"
#: Measured in this order in every round.
VARIANTS = (STOCK, SIDETLS, SIDETLS_API)

#: Loopback only, on purpose: the benchmark never touches another address.
HOST = "127.0.0.1"

#: Listener endpoint descriptions, one per variant.
LISTEN_ON = {
    STOCK: "tcp:0:interface=" + HOST,
    SIDETLS: "sidetls:tcp:0:interface=" + HOST,
    SIDETLS_API: "tcp:0:interface=" + HOST,  # wrapped with listener()
}

#: Bulk calls carry 1 MiB; allow up to 2 MiB.  Without a RemoteInterface
#: Foolscap applies no size limit to arguments either, but Tahoe-LAFS
#: declares its interfaces, so the benchmark does too.
MAX_ARGUMENT = 2**21
#: Bytes echoed back from each end of a bulk argument, to check that the
#: argument that arrived is the one that was sent.
PROBE = 16


class RIBench(RemoteInterface):
    def put(data=ByteStringConstraint(MAX_ARGUMENT)):
        """Receive one bulk argument; answer (length, head, tail)."""
        return TupleOf(int, ByteStringConstraint(PROBE), ByteStringConstraint(PROBE))

    def ping():
        return int

    def stats():
        """Listener-side counters and its VmRSS (after a gc.collect)."""
        return Any()

    def profile(on=bool):
        """Start (on=True) or stop and save the listener's cProfile."""
        return bool


def rss_kib() -> int:
    """This process's resident set size, from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


_TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, all CPUs,
    from /proc/stat; steal is time the hypervisor gave to other guests."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / _TICK, steal / _TICK


def raise_fd_limit(needed: int = 4096) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = max(soft, needed)
    else:
        target = hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise SystemExit(
            "need %d file descriptors, RLIMIT_NOFILE allows %d (hard %d); "
            "raise 'ulimit -n'" % (needed, soft, hard)
        )
    return soft


def load_certs(path: str) -> list[bytes]:
    with open(path) as f:
        return [pem.encode("ascii") for pem in json.load(f)]
