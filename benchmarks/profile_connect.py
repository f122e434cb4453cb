"""
Profile connection setup, benchmark (b), for stock Foolscap and sidetls.

    .venv/bin/python benchmarks/profile_connect.py [--count N] [--repeat R]

Runs the (b) workload R times per variant (alternating, as run.py does)
with cProfile on in both the listener and the dialer process for the timed
part only, using CPU time (time.process_time) as the profiler's clock, so
time spent waiting in epoll for the other process is not counted.  Prints,
per connection: CPU time, call counts of the things that cost (reactor
timers, socket and TLS I/O, zope.interface work), cumulative time of the
TLS set-up paths, and the functions whose time differs most from stock.

cProfile slows Python code down, so the absolute times are inflated;
compare variants, not these numbers with run.py's.
"""

from __future__ import annotations

import argparse
import os
import pstats
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402
from _common import STOCK, VARIANTS  # noqa: E402

SITE = os.sep + "site-packages" + os.sep

#: (label, file suffix or "~" for builtins, function name)
COUNTED = [
    ("reactor.callLater", "twisted/internet/base.py", "callLater"),
    ("DelayedCall.cancel", "twisted/internet/base.py", "cancel"),
    ("epoll.poll (reactor iterations)", "~", "<method 'poll' of 'select.epoll' objects>"),
    ("socket.send", "~", "<method 'send' of '_socket.socket' objects>"),
    ("socket.recv", "~", "<method 'recv' of '_socket.socket' objects>"),
    ("SSL_write (OpenSSL Connection.send)", "OpenSSL/SSL.py", "send"),
    ("SSL_read (OpenSSL Connection.recv)", "OpenSSL/SSL.py", "recv"),
    ("SSL_do_handshake", "~", "<built-in method _openssl.SSL_do_handshake>"),
    ("Connection.bio_read", "OpenSSL/SSL.py", "bio_read"),
    ("Connection.bio_write", "OpenSSL/SSL.py", "bio_write"),
    ("TLS layer write (BufferingTLSTransport)", "twisted/protocols/tls.py", "write"),
    ("TLS aggregated flush", "twisted/protocols/tls.py", "flush"),
    ("SideTLSProtocol.write", "foolscap_sidetls/_protocol.py", "write"),
    ("stock _newtls ConnectionMixin.write", "twisted/internet/_newtls.py", "write"),
    ("zope Specification.interfaces", "zope/interface/interface.py", "interfaces"),
    ("zope C3 resolution order (ro.ro)", "zope/interface/ro.py", "ro"),
    ("zope alsoProvides", "zope/interface/declarations.py", "alsoProvides"),
    ("zope directlyProvides", "zope/interface/declarations.py", "directlyProvides"),
    ("foolscap log.msg", "foolscap/logging/log.py", "msg"),
]

#: Cumulative time of these (ms per connection).
CUMULATIVE = [
    ("Negotiation.startTLS (both variants)", "foolscap/negotiate.py", "startTLS"),
    ("  SideTLSProtocol.startTLS", "foolscap_sidetls/_protocol.py", "startTLS"),
    ("  stock ConnectionMixin.startTLS", "twisted/internet/_newtls.py", "startTLS"),
    ("  FoolscapContextFactory.__init__", "foolscap/crypto.py", "__init__"),
    ("zope alsoProvides / directlyProvides", "zope/interface/declarations.py", "alsoProvides"),
    ("", "zope/interface/declarations.py", "directlyProvides"),
    ("SideTLSProtocol.dataReceived", "foolscap_sidetls/_protocol.py", "dataReceived"),
    ("TLSMemoryBIOProtocol.dataReceived", "twisted/protocols/tls.py", "dataReceived"),
    ("TLSMemoryBIOProtocol._checkHandshakeStatus", "twisted/protocols/tls.py",
     "_checkHandshakeStatus"),
    ("Negotiation.dataReceived", "foolscap/negotiate.py", "dataReceived"),
    ("Tub.getReference (dialer)", "foolscap/pb.py", "getReference"),
    ("Tub.stopService (dialer)", "foolscap/pb.py", "stopService"),
    ("HostnameEndpoint.connect (dialer)", "twisted/internet/endpoints.py", "connect"),
    ("SideTLSHandler.hint_to_endpoint (dialer)", "foolscap_sidetls/_handler.py",
     "hint_to_endpoint"),
    ("Listener.buildProtocol (listener)", "foolscap/pb.py", "buildProtocol"),
    ("SideTLSFactory.buildProtocol (listener)", "foolscap_sidetls/_protocol.py",
     "buildProtocol"),
]


def _short(filename: str) -> str:
    if SITE in filename:
        return filename.split(SITE, 1)[1]
    if filename.startswith(os.path.dirname(HERE)):
        return os.path.relpath(filename, os.path.dirname(HERE))
    return filename


def load(paths: list[str]) -> tuple[pstats.Stats, dict]:
    stats = pstats.Stats(paths[0])
    for path in paths[1:]:
        stats.add(path)
    table = {}
    for (filename, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
        key = (_short(filename), line, name)
        table[key] = (nc, tt, ct)
    return stats, table


def _find(table: dict, suffix: str, name: str) -> tuple[int, float, float]:
    calls, tt, ct = 0, 0.0, 0.0
    for (filename, _, fname), (n, t, c) in table.items():
        if fname == name and filename.endswith(suffix):
            calls += n
            tt += t
            ct = max(ct, c)  # cumulative: the outermost of same-named entries
    return calls, tt, ct


def report(tables: dict, variants: list[str], connections: int) -> None:
    width = max(len(v) for v in variants) + 2
    for side in ("dialer", "listener"):
        print("\n=== %s process, per connection (%d connections per variant)"
              % (side, connections))
        head = "%-44s" % "" + "".join("%*s" % (max(width, 10), v) for v in variants)
        print(head)
        row = "%-44s" % "CPU ms (profiled, total)"
        for v in variants:
            row += "%*.3f" % (max(width, 10), tables[v][side][0].total_tt * 1000 / connections)
        print(row)
        print("-- calls")
        for label, suffix, name in COUNTED:
            values = [_find(tables[v][side][1], suffix, name)[0] / connections
                      for v in variants]
            if any(values):
                print("%-44s" % label + "".join("%*.2f" % (max(width, 10), x)
                                                for x in values))
        print("-- cumulative ms")
        for label, suffix, name in CUMULATIVE:
            values = [_find(tables[v][side][1], suffix, name)[2] * 1000 / connections
                      for v in variants]
            if any(values):
                print("%-44s" % (label or "  (directlyProvides)")
                      + "".join("%*.3f" % (max(width, 10), x) for x in values))
        stock = tables[STOCK][side][1]
        for v in variants:
            if v == STOCK:
                continue
            other = tables[v][side][1]
            rows = []
            for key in set(stock) | set(other):
                n0, t0, _ = stock.get(key, (0, 0.0, 0.0))
                n1, t1, _ = other.get(key, (0, 0.0, 0.0))
                rows.append((t1 - t0, n1 - n0, key))
            rows.sort(key=lambda r: -abs(r[0]))
            print("-- %s - stock: largest differences in own time (µs/conn, calls/conn)" % v)
            for dt, dn, (filename, line, name) in rows[:15]:
                print("  %+8.1f µs %+7.2f  %s:%d(%s)" % (
                    dt * 1e6 / connections, dn / connections, filename, line, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200,
                        help="connections per measurement (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measurements per variant (default %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--keep", help="keep the .prof files in this directory")
    args = parser.parse_args()
    variants = [STOCK] + [v for v in args.variants.split(",") if v and v != STOCK]
    with tempfile.TemporaryDirectory(prefix="sidetls-profile-") as tmp:
        out = args.keep or tmp
        os.makedirs(out, exist_ok=True)
        certs = os.path.join(tmp, "certs.json")
        print("generating %d certificates ..." % (args.count + 7), flush=True)
        run.generate_certificates(args.count + 7, certs)
        rates = {v: [] for v in variants}
        for r in range(args.repeat):
            for v in variants:
                d = os.path.join(out, "r%d" % r)
                os.makedirs(d, exist_ok=True)
                result = run.measure("connect", v, ["--count", str(args.count)], certs, d)
                rates[v].append(result["conn_per_s"])
            print("repeat %d: %s conn/s (profiled)" % (r + 1, ", ".join(
                "%s %.1f" % (v, rates[v][-1]) for v in variants)), flush=True)
        tables = {
            v: {
                side: load([os.path.join(out, "r%d" % r, "connect-%s-%s.prof" % (v, side))
                            for r in range(args.repeat)])
                for side in ("dialer", "listener")
            }
            for v in variants
        }
    report(tables, variants, args.count * args.repeat)


if __name__ == "__main__":
    main()
