"""
Pieces shared by the benchmark driver (run.py) and its worker processes
(_worker.py): the remote interface, the two variants, and process helpers.
"""

from __future__ import annotations

import json
import resource

from foolscap.api import RemoteInterface
from foolscap.constraint import Any, ByteStringConstraint
from foolscap.schema import TupleOf

STOCK = "stock"
SIDETLS = "sidetls"
VARIANTS = (STOCK, SIDETLS)

#: Loopback only, on purpose: the benchmark never touches another address.
HOST = "127.0.0.1"

#: Listener endpoint descriptions, one per variant.
LISTEN_ON = {
    STOCK: "tcp:0:interface=" + HOST,
    SIDETLS: "sidetls:tcp:0:interface=" + HOST,
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
