"""
This project's SAM client (foolscap_sidetls.i2p.sam) against txi2p
(txi2p-tahoe, the SAM library Tahoe-LAFS uses), on the five points of
issue 12's I2P decision, with a fake SAM bridge on 127.0.0.1:

    .venv/bin/python benchmarks/i2p_vs_txi2p.py [--runs N]

  import     CPU seconds (user + system, getrusage) a fresh process spends
             importing each library once Twisted and Foolscap are loaded:
             txi2p's endpoint plugin module (what Twisted's plugin search
             imports, Parsley grammars and all) against foolscap_sidetls.i2p
             (the whole I2P package, SAM client included); and a
             ``sidetls:i2p:`` description parsed in a fresh process.
             Medians of --runs processes.
  registry   two listeners, each on its own SAM bridge, with the same session
             nickname: SESSION CREATEs the second bridge receives (txi2p keeps
             one process-global session per nickname).
  recovery   the bridge drops a listener's session (the router restarted):
             SESSION CREATEs in the next 3 s.
  accept     a listener's bridge starts failing every STREAM ACCEPT (RESULT=OK
             then a peer line that is not a destination; or the accepting
             sockets closed and new ones refused with RESULT=I2P_ERROR), then
             heals: SAM connections during 3 s of failures, and STREAM
             ACCEPTs pending 12 s after it heals (0: the listener accepts
             nothing any more).
  keyfile    a listener making its key file: the file's mode, and how it is
             written.

Nothing leaves 127.0.0.1.  A table is printed; nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Each measured in a process of its own (module caches, grammars).
IMPORT_PROBES = {
    "txi2p": "import twisted.plugins.txi2p_endpoint_parsers",
    "foolscap_sidetls.i2p": "import foolscap_sidetls.i2p",
    "sidetls:i2p: parse": (
        "from twisted.internet.endpoints import serverFromString\n"
        "from twisted.internet.testing import MemoryReactor\n"
        "serverFromString(MemoryReactor(), 'sidetls:i2p:/nonexistent/key:api=SAM:"
        "apiEndpoint=tcp\\\\:127.0.0.1\\\\:7656')"
    ),
}
#: Loaded before the clock starts, so only the library's own cost counts.
PRELUDE = (
    "import resource, sys\n"
    "sys.path.insert(0, %r)\n"
    "import twisted.internet.reactor, twisted.internet.endpoints, twisted.plugin\n"
    "import foolscap.api, foolscap_sidetls\n"
    "def cpu():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    return r.ru_utime + r.ru_stime\n"
    "started = cpu()\n"
) % (str(ROOT),)


def import_cpu(runs: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for name, code in IMPORT_PROBES.items():
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, "-c", PRELUDE + code + "\nprint(cpu() - started)"],
                capture_output=True, text=True, timeout=120, cwd=str(ROOT),
            )
            if done.returncode != 0:
                raise SystemExit("%s failed:\n%s" % (name, done.stderr[-2000:]))
            found.setdefault(name, []).append(float(done.stdout.split()[-1]))
    return found


# -- the behaviours, over a fake SAM bridge on loopback (run in a child) ----------------


def behaviours() -> dict[str, Any]:
    """Runs in a child process: its own reactor, bridges and both libraries."""
    sys.path.insert(0, str(ROOT))
    from twisted.internet import defer, reactor, task
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
    from twisted.internet.protocol import Factory, Protocol
    from twisted.protocols.basic import LineReceiver
    from txi2p.sam import session as txi2p_session
    from txi2p.sam.endpoints import SAMI2PStreamServerEndpoint

    from foolscap_sidetls import i2p
    from tests.i2p._fakes import make_keypair

    class Bridge(LineReceiver):
        delimiter = b"\n"
        factory: Any

        def connectionMade(self) -> None:
            self.factory.connections += 1

        def connectionLost(self, reason: object = None) -> None:
            self.factory.accepting.discard(self)

        def lineReceived(self, raw: bytes) -> None:
            words = raw.decode("utf-8").split(" ")
            verb = " ".join(words[:2])
            fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            bridge = self.factory
            bridge.verbs.append(verb)
            if verb == "HELLO VERSION":
                self.sendLine(b"HELLO REPLY RESULT=OK VERSION=3.1")
            elif verb == "DEST GENERATE":
                public, private = make_keypair()
                self.sendLine(("DEST REPLY PUB=%s PRIV=%s" % (public, private)).encode())
            elif verb == "SESSION CREATE":
                private = fields["DESTINATION"]
                if private == "TRANSIENT":
                    private = make_keypair()[1]
                self.public = private  # what NAMING LOOKUP ME answers; any destination will do
                bridge.sessions.append(self)
                self.sendLine(("SESSION STATUS RESULT=OK DESTINATION=%s" % (private,)).encode())
            elif verb == "NAMING LOOKUP":
                self.sendLine(("NAMING REPLY RESULT=OK NAME=%s VALUE=%s" % (fields["NAME"], self.public)).encode())
            elif verb == "STREAM ACCEPT":
                if bridge.mode == "refuse":
                    self.sendLine(b'STREAM STATUS RESULT=I2P_ERROR MESSAGE="refused"')
                    return
                self.sendLine(b"STREAM STATUS RESULT=OK")
                if bridge.mode == "bad":
                    self.sendLine(b"this-is-not-a-destination FROM_PORT=0 TO_PORT=0")
                else:
                    bridge.accepting.add(self)

    async def bridge(mode: str = "quiet") -> Any:
        factory = Factory.forProtocol(Bridge)
        factory.connections, factory.verbs, factory.sessions, factory.accepting = 0, [], [], set()
        factory.mode = mode
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        factory.endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=5)
        factory.port = port
        return factory

    def sleep(seconds: float) -> Any:
        return task.deferLater(reactor, seconds, lambda: None)

    scratch = tempfile.mkdtemp(prefix="sidetls-bench-")
    keys = iter(range(1000))

    def keyfile() -> str:
        return os.path.join(scratch, "key-%d" % next(keys))

    async def ours_listen(b: Any, nickname: str, key: str) -> Any:
        _, private = make_keypair()
        if not os.path.exists(key):
            with open(key, "w") as f:
                f.write(private)
        handler = i2p.sam_endpoint(b.endpoint)
        session = i2p.sam.SAMSession(handler._bridge, "listen", nickname, private, {})
        port = await i2p.sam.SAMServerEndpoint(session, None).listen(Factory.forProtocol(Protocol))
        return port

    async def txi2p_listen(b: Any, nickname: str, key: str) -> Any:
        return await SAMI2PStreamServerEndpoint.new(b.endpoint, key, nickname=nickname).listen(
            Factory.forProtocol(Protocol)
        )

    listen = {"txi2p": txi2p_listen, "ours": ours_listen}
    found: dict[str, Any] = {}

    async def run() -> None:
        for lib in ("txi2p", "ours"):
            # registry: the same nickname on two bridges
            a, b = await bridge(), await bridge()
            await listen[lib](a, "same", keyfile())
            second = await listen[lib](b, "same", keyfile())
            found.setdefault("registry", {})[lib] = b.verbs.count("SESSION CREATE")
            # recovery: the bridge drops the second listener's session
            before = b.verbs.count("SESSION CREATE")
            for control in list(b.sessions):
                control.transport.loseConnection()
            await sleep(3)
            found.setdefault("recovery", {})[lib] = b.verbs.count("SESSION CREATE") - before
            del second
            txi2p_session._sessions.clear()
            # accept: a bridge that starts failing every STREAM ACCEPT, then heals
            for mode in ("bad", "refuse"):
                h = await bridge()
                await listen[lib](h, "hostile-%s-%s" % (mode, lib), keyfile())
                await sleep(0.5)
                h.mode = mode
                for pending in list(h.accepting):
                    if mode == "bad":
                        pending.sendLine(b"this-is-not-a-destination FROM_PORT=0 TO_PORT=0")
                    else:
                        pending.transport.loseConnection()
                h.accepting.clear()
                start = h.connections
                await sleep(3)
                failing = h.connections - start
                h.mode = "quiet"
                await sleep(12)  # longer than our longest backoff step (10 s)
                found.setdefault("accept-" + mode, {})[lib] = {
                    "SAM connections in 3 s of failures": failing,
                    "accepts pending 12 s after it heals": len(h.accepting),
                }
                txi2p_session._sessions.clear()
            # keyfile: made by the listener
            k = await bridge()
            path = keyfile()
            if lib == "txi2p":
                await txi2p_listen(k, "key-" + lib, path)
            else:
                tub_free = i2p.sam_endpoint(k.endpoint)
                key = await tub_free._bridge.generate_key()
                from foolscap_sidetls._files import write_private

                write_private(path, key)  # what i2p.listen() does with a new key
            found.setdefault("keyfile", {})[lib] = oct(os.stat(path).st_mode & 0o777)
            txi2p_session._sessions.clear()

    def done(result: Any) -> None:
        if hasattr(result, "getTraceback"):
            found["error"] = result.getTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run()).addBoth(done))
    reactor.run()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(behaviours()))
        return
    cpu = import_cpu(args.runs)
    done = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    found = json.loads(done.stdout.splitlines()[-1])
    if "error" in found:
        raise SystemExit(found["error"])
    print("import (CPU s, median of %d fresh processes; min-max):" % (args.runs,))
    for name, values in cpu.items():
        print("  %-22s %.2f  (%.2f-%.2f)" % (name, statistics.median(values), min(values), max(values)))
    for key in ("registry", "recovery", "accept-bad", "accept-refuse", "keyfile"):
        print("%-14s txi2p: %s\n%-14s ours:  %s" % (key, found[key]["txi2p"], "", found[key]["ours"]))


if __name__ == "__main__":
    main()
