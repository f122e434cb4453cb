"""
Time to first call and to a second connection over real Tor and I2P, stock
Foolscap against foolscap-sidetls, in one run.

    .venv/bin/python benchmarks/networks.py [--rounds N] [--only tor|i2p]
                                            [--output FILE]

Starts the private networks the integration tests use (tests/integration:
1 authority + 3 relays + 2 client tors; one i2pd as its own floodfill, all
on 127.0.0.1), then, for each round and network, runs every variant back to
back with fresh Tubs and a freshly published service:

  listen   from ``Tub()`` to the service being reachable (onion published /
           I2P destination's SAM session open and accepting);
  first    from a fresh dialing Tub (and a fresh handler: for I2P its SAM
           session is part of the cost a new Tub pays; Tor dials through the
           dialer tor's SOCKS port) to the answer of its first call;
  second   from dropping that connection to the answer of a call on a new
           connection from the same Tub (Tor: circuits and descriptor
           cached; I2P: the SAM session reused).

Variants.  Tor: ``stock`` is Foolscap's own tor handler and a plain
listener behind an onion made with txtorcon (stock works over Tor: the
listener's sockets are accepted ones); ``sidetls`` is foolscap_sidetls.tor.
I2P: ``stock+txi2p`` is Foolscap's i2p handler with txi2p's server endpoint,
which only works because of txi2p's ``invertTLS`` flip; ``sidetls`` is
foolscap_sidetls.i2p.  Medians over the rounds, with min-max.  Nothing
asserts on timings; a table is printed and written to --output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from foolscap.api import Referenceable, Tub  # noqa: E402
from foolscap.connections import i2p as stock_i2p  # noqa: E402
from foolscap.connections import tor as stock_tor  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

from foolscap_sidetls import i2p, tor  # noqa: E402
from tests.integration import _i2pnet, _tornet  # noqa: E402

DEFAULT_OUTPUT = HERE / "networks-last-run.md"
STOCK, STOCK_TXI2P, SIDETLS = "stock", "stock+txi2p", "sidetls"
METRICS = ("listen", "first", "second")


class Echo(Referenceable):
    def remote_echo(self, data: bytes) -> bytes:
        return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sleep(reactor: Any, seconds: float) -> Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def until(reactor: Any, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %s s waiting for %s" % (timeout, what))
        await sleep(reactor, 0.02)


def new_tub() -> Tub:
    tub = Tub()
    tub.setOption("expose-remote-exception-types", False)
    tub.startService()
    return tub


async def dial_twice(reactor: Any, dialer: Tub, furl: str) -> tuple[float, float]:
    """First call from a fresh Tub; then the same over a new connection."""
    t0 = time.monotonic()
    connecting = dialer.getReference(furl)
    [connector] = dialer._activeConnectors
    try:
        rref = await connecting
    except Exception as e:
        statuses = connector.getConnectionInfo().connectorStatuses
        raise RuntimeError("could not connect (%r); hint statuses: %r" % (e, statuses))
    await rref.callRemote("echo", b"ping")
    first = time.monotonic() - t0

    gone: Deferred = Deferred()
    rref.notifyOnDisconnect(gone.callback, None)
    t0 = time.monotonic()
    rref.tracker.broker.transport.loseConnection()
    await gone
    await until(reactor, lambda: not dialer.brokers, 30, "the dialer to forget the connection")
    rref = await dialer.getReference(furl)
    await rref.callRemote("echo", b"ping")
    second = time.monotonic() - t0
    return first, second


class Cleanup:
    """Teardown steps, run last-in first-out, each allowed to fail."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], Any]] = []

    def add(self, step: Callable[[], Any]) -> None:
        self.steps.append(step)

    async def run(self) -> None:
        while self.steps:
            try:
                await defer.maybeDeferred(self.steps.pop())
            except Exception as e:  # teardown keeps going; report it
                print("  (cleanup: %s)" % (e,), flush=True)


# -- Tor ---------------------------------------------------------------------


async def tor_round(reactor: Any, net: _tornet.TorNetwork, variant: str) -> dict[str, float]:
    server_ctl = TCP4ClientEndpoint(reactor, "127.0.0.1", net.server.control_port)
    dialer_socks = TCP4ClientEndpoint(reactor, "127.0.0.1", net.dialer.socks_port)
    cleanup = Cleanup()
    try:
        t0 = time.monotonic()
        server = new_tub()
        cleanup.add(server.stopService)
        if variant == SIDETLS:
            handler = tor.control_endpoint(server_ctl)
            cleanup.add(handler.stop)
            hint = await tor.listen(server, handler)
        else:
            import txtorcon

            local = free_port()
            server.listenOn("tcp:%d:interface=127.0.0.1" % local)
            control = await txtorcon.connect(reactor, server_ctl)
            cleanup.add(control.quit)
            onion = await control.create_onion_service([(3457, "127.0.0.1:%d" % local)], version=3)
            cleanup.add(onion.remove)
            hint = "tor:%s:3457" % (onion.hostname,)
        server.setLocation(hint)
        furl = server.registerReference(Echo())
        listen = time.monotonic() - t0

        dialer = new_tub()
        cleanup.add(dialer.stopService)
        dialer.removeAllConnectionHintHandlers()
        # Both dial through the dialer tor's SOCKS port.  (Foolscap's own
        # control_endpoint cannot be used here: it fails on a SocksPort
        # given as ADDRESS:PORT -- "could not use config.SocksPort" --
        # which is how this network's tors are configured.)
        if variant == SIDETLS:
            dial_handler = tor.socks_endpoint(dialer_socks)
        else:
            dial_handler = stock_tor.socks_endpoint(dialer_socks)
        dialer.addConnectionHintHandler("tor", dial_handler)
        first, second = await dial_twice(reactor, dialer, furl)
        return {"listen": listen, "first": first, "second": second}
    finally:
        await cleanup.run()


# -- I2P ---------------------------------------------------------------------


async def i2p_round(reactor: Any, router: _i2pnet.I2PRouter, variant: str, workdir: str) -> dict[str, float]:
    sam = lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", router.sam_port)  # noqa: E731
    options = dict(_i2pnet.SESSION_OPTIONS)
    cleanup = Cleanup()
    keyfile = tempfile.mktemp(prefix="dest-", suffix=".key", dir=workdir)
    try:
        t0 = time.monotonic()
        server = new_tub()
        if variant == SIDETLS:
            handler = i2p.sam_endpoint(sam(), options=options)
            cleanup.add(handler.stop)
            cleanup.add(server.stopService)
            hint = await i2p.listen(server, handler, keyfile)
        else:
            from txi2p.sam import session as txi2p_session
            from txi2p.sam.endpoints import SAMI2PStreamServerEndpoint

            nickname = "bench-s-%d-%d" % (os.getpid(), int(t0 * 1000))
            cleanup.add(lambda: _close_txi2p_session(txi2p_session, nickname))
            cleanup.add(lambda: _quiet_txi2p_ports(server))
            cleanup.add(server.stopService)
            endpoint = SAMI2PStreamServerEndpoint.new(sam(), keyfile, nickname=nickname, options=options)
            listener = server.listenOn(endpoint)
            await txi2p_session.getSession(nickname)
            await until(reactor, lambda: listener._lp is not None and bool(listener._lp.accepts), 60,
                        "txi2p's STREAM ACCEPT")
            hint = "i2p:" + i2p.address_of(keyfile)
        server.setLocation(hint)
        furl = server.registerReference(Echo())
        listen = time.monotonic() - t0

        dialer = new_tub()
        dialer.removeAllConnectionHintHandlers()
        if variant == SIDETLS:
            dial_handler = i2p.sam_endpoint(sam(), options=options)
            cleanup.add(dial_handler.stop)
        else:
            from txi2p.sam import session as txi2p_session

            # A nickname of its own: txi2p would otherwise share one
            # session per process across rounds and hide its cost.
            dial_nick = "bench-d-%d-%d" % (os.getpid(), int(time.monotonic() * 1000))
            cleanup.add(lambda: _close_txi2p_session(txi2p_session, dial_nick))
            dial_handler = stock_i2p.sam_endpoint(sam(), nickname=dial_nick, options=options)
        cleanup.add(dialer.stopService)
        dialer.addConnectionHintHandler("i2p", dial_handler)
        first, second = await dial_twice(reactor, dialer, furl)
        return {"listen": listen, "first": first, "second": second}
    finally:
        await cleanup.run()


def _quiet_txi2p_ports(tub: Tub) -> None:
    # txi2p errbacks its accept factory's Deferred when the accepting
    # sockets close, and nobody else listens to it.
    for listener in tub.getListeners():
        port = getattr(listener, "_lp", None)
        factory = getattr(port, "factory", None)
        d = getattr(factory, "deferred", None)
        if d is not None and not d.called:
            d.addErrback(lambda _: None)


def _close_txi2p_session(txi2p_session: Any, nickname: str) -> None:
    session = txi2p_session._sessions.get(nickname)
    if session is not None:
        session.close()


# -- driver ------------------------------------------------------------------


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return "%.2f (%.2f-%.2f)" % (statistics.median(values), min(values), max(values))


def table(title: str, variants: tuple[str, ...], results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = ["### %s" % title, "", "| variant | listen, s | first call, s | second connection, s |",
             "| --- | --- | --- | --- |"]
    for v in variants:
        lines.append("| %s | %s |" % (v, " | ".join(fmt(results[v][m]) for m in METRICS)))
    base, ours = variants
    ratios = []
    for m in METRICS:
        a, b = results[base][m], results[ours][m]
        if a and b:
            ratios.append("%s %.2f" % (m, statistics.median(b) / statistics.median(a)))
    lines += ["", "sidetls / %s (median over median; < 1 is faster): %s" % (base, ", ".join(ratios)), ""]
    return lines


async def measure(reactor: Any, args: argparse.Namespace, nets: dict[str, Any], workdir: str) -> list[str]:
    out: list[str] = []
    plans = []
    if "tor" in nets:
        plans.append(("Tor (private network, 6 tors on loopback)", (STOCK, SIDETLS),
                      lambda v: tor_round(reactor, nets["tor"], v)))
    if "i2p" in nets:
        plans.append(("I2P (one private i2pd, zero-hop tunnels)", (STOCK_TXI2P, SIDETLS),
                      lambda v: i2p_round(reactor, nets["i2p"], v, workdir)))
    for title, variants, run in plans:
        results: dict[str, dict[str, list[float]]] = {v: {m: [] for m in METRICS} for v in variants}
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                got = await run(v)
                for m in METRICS:
                    results[v][m].append(got[m])
                print("  %s round %d %-11s listen %6.2f s  first %6.2f s  second %6.2f s"
                      % (title.split()[0], r + 1, v, got["listen"], got["first"], got["second"]), flush=True)
        out += table(title, variants, results)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("tor", "i2p"))
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    workdir = tempfile.mkdtemp(prefix="sidetls-bench-net-")
    nets: dict[str, Any] = {}
    started = time.monotonic()
    try:
        if args.only in (None, "tor"):
            nets["tor"] = _tornet.TorNetwork(Path(workdir) / "tor")
            nets["tor"].start()
        if args.only in (None, "i2p"):
            nets["i2p"] = _i2pnet.I2PRouter(Path(workdir) / "i2p")
            nets["i2p"].start()
        for kind, timeout in (("tor", 120), ("i2p", 60)):
            if kind in nets:
                nets[kind].wait(timeout)
        print("networks usable after %.1f s" % (time.monotonic() - started), flush=True)

        def run(reactor: Any) -> Awaitable[list[str]]:
            return Deferred.fromCoroutine(measure(reactor, args, nets, workdir))

        lines: list[str] = []
        task.react(lambda reactor: run(reactor).addCallback(lines.extend))
    except SystemExit as e:
        if e.code not in (0, None):
            for net in nets.values():
                print(net.logs())
            raise
    finally:
        for net in nets.values():
            net.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    command = "python benchmarks/networks.py --rounds %d%s" % (args.rounds, " --only " + args.only if args.only else "")
    header = [
        "## Networks benchmark, %s" % datetime.date.today().isoformat(),
        "",
        "`%s` on %s, %d CPUs, Python %s." % (command, platform.platform(), os.cpu_count() or 0,
                                            platform.python_version()),
        "",
    ]
    text = "\n".join(header + lines)
    print(text)
    Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
