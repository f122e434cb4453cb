"""
A Foolscap Tub listening on I2P with foolscap-sidetls: listen on an I2P
destination, print the FURL, and optionally dial it (over I2P) and call it.

Needs an I2P router with its SAM bridge enabled.  For i2pd (Debian/Ubuntu:
``apt-get install i2pd``) that is, in /etc/i2pd/i2pd.conf::

    [sam]
    enabled = true
    address = 127.0.0.1
    port = 7656

then ``systemctl restart i2pd``.  Give the router a few minutes after its
first start to join the network.  Then::

    .venv/bin/python examples/i2p_listener.py                 # SAM at 127.0.0.1:7656
    .venv/bin/python examples/i2p_listener.py --sam tcp:127.0.0.1:7656
    .venv/bin/python examples/i2p_listener.py --i2pd-conf /etc/i2pd
    .venv/bin/python examples/i2p_listener.py --launch --data-dir ~/.cache/sidetls-i2pd

It prints the FURL and serves until Ctrl-C.  Other options:

    --dial             also connect to the FURL over I2P (through a second
                       Tub and SAM session), call it with a 64 KiB payload,
                       print the timings, and exit (status 0 on success)
    --dial FURL        only dial someone else's FURL and call "echo" on it
    --key-file PATH    where the destination's private key is kept (default:
                       ./i2p-listener.key): the same .b32.i2p address, and
                       FURL, on every run
    --option KEY=VALUE I2CP/SAM session option (repeatable), e.g.
                       inbound.length=1 for faster, less anonymous tunnels
    --launch           start a private i2pd instead (stopped on exit);
                       --data-dir keeps its router identity and netDb, so a
                       second run joins the network much faster
    --i2pd-config K=V  extra i2pd setting for --launch (repeatable)

The listening Tub is the TLS server of every connection even though SAM hands
it each one over a socket it opened itself (STREAM ACCEPT); the dialing Tub is
the TLS client.  Progress is printed as it happens: "launching i2pd",
"opening SAM session (can take ~20 s)" (i2pd builds the session's tunnels;
on the real network it can take longer), "connecting to ... over I2P", and
every 10 seconds a step is still waiting, the example says on what.

Ctrl-C (or SIGTERM) stops it at any point, as ``foolscap-sidetls serve``
does: it prints "stopping...", closes its SAM sessions, stops the i2pd it
launched, prints "stopped" and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure
from foolscap.api import Referenceable, Tub

from foolscap_sidetls import i2p

PAYLOAD = 64 * 1024
#: How often a step that is still under way says so (a session's tunnels
#: can take minutes, and silence looks like a hang).
STILL_WAITING = 10


class Echo(Referenceable):
    def remote_echo(self, data: bytes) -> bytes:
        return data


class Progress:
    """
    Prints each status with the time since the start, and while a step is
    under way, every L{STILL_WAITING} seconds which one it still is and
    what it waits on (C{describe()}: the launched i2pd's pid, say).
    """

    def __init__(self, reactor: Any, describe: Callable[[], str]) -> None:
        self._started = time.monotonic()
        self._describe = describe
        self._waiting: Optional[str] = None
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __call__(self, status: str, note: str = "") -> None:
        self._waiting = status
        print("  [%5.1f s] %s%s" % (self.elapsed(), status, note), flush=True)
        if not self._ticker.running:
            self._ticker.start(STILL_WAITING, now=False)

    def done(self) -> None:
        """The step finished: nothing to say until the next status."""
        self._waiting = None
        if self._ticker.running:
            self._ticker.stop()

    def _tick(self) -> None:
        if self._waiting is not None:
            print(
                "  [%5.1f s] ... still %s -- via %s" % (self.elapsed(), self._waiting, self._describe()),
                flush=True,
            )


class Stopper:
    """
    Runs the example until it ends or is stopped by Ctrl-C or SIGTERM; a
    stop cancels the work, waits for its cleanup (Tub stopped, SAM sessions
    closed, i2pd stopped), and is no error: exit status 0, as for
    C{foolscap-sidetls serve}.

    An i2pd started with --launch is in our process group, so the
    terminal's Ctrl-C reaches it too and it shuts down by itself: its SAM
    bridge can close our connections before the reactor gets to its
    shutdown triggers, and what that breaks would be reported as a
    failure.  So the signal is noted the moment it arrives, and anything
    that fails after it is part of stopping.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.stopping = False
        self._work: Optional[Deferred] = None
        self._ended: Deferred = Deferred()

    def run(self, start: Callable[[], Deferred]) -> Deferred:
        """
        C{start()}'s result (an exit status), or 0 once stopped.  Started
        when the reactor runs: only then are its signal handlers in place,
        so an early Ctrl-C stops cleanly instead of raising
        KeyboardInterrupt.
        """
        running: Deferred = Deferred()
        self._reactor.callWhenRunning(running.callback, None)

        def begin(_: None) -> Deferred:
            self._note_signals()
            self._reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
            self._work = start()
            return self._work.addBoth(self._settle)

        return running.addCallback(begin)

    def _note_signals(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def note(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
                self.stopping = True
                previous(signum, frame)

            signal.signal(number, note)

    def _settle(self, result: Any) -> Any:
        self._ended.callback(None)
        if self.stopping:
            return 0
        return result

    def _shutdown(self) -> Optional[Deferred]:
        if self._ended.called and not self.stopping:
            return None  # the work ended by itself; the reactor stops after it
        self.stopping = True
        print("stopping...", flush=True)
        if self._work is not None and not self._work.called:
            self._work.cancel()
        return self._ended.addCallback(lambda _: print("stopped", flush=True))


def pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError("%s %r: expected KEY=VALUE" % (what, value))
        result[key] = val
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sam", help="SAM bridge endpoint (default tcp:127.0.0.1:7656)")
    where.add_argument("--i2pd-conf", metavar="DIR", help="read the SAM address from DIR/i2pd.conf")
    where.add_argument("--launch", action="store_true", help="start a private i2pd")
    parser.add_argument("--data-dir", help="i2pd data directory for --launch")
    parser.add_argument("--i2pd-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--key-file", default="i2p-listener.key")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--dial", nargs="?", const="self", metavar="FURL")
    args = parser.parse_args(argv)
    try:
        pairs(args.option, "--option")
        pairs(args.i2pd_config, "--i2pd-config")
    except ValueError as e:
        parser.error(str(e))  # a usage error: status 2, before anything starts
    return args


def make_handler(reactor: Any, args: argparse.Namespace) -> i2p.I2PHandler:
    options = pairs(args.option, "--option")
    if args.launch:
        return i2p.launch(
            data_directory=args.data_dir, config=pairs(args.i2pd_config, "--i2pd-config"), options=options
        )
    if args.i2pd_conf:
        return i2p.local_i2p(args.i2pd_conf, options)
    if args.sam:
        return i2p.sam_endpoint(clientFromString(reactor, args.sam), options)
    return i2p.default(reactor, options)


def describer(handler: i2p.I2PHandler) -> Callable[[], str]:
    """What the handler waits on, with the launched i2pd's pid once it runs."""

    def describe() -> str:
        pid = handler.launched_pid
        return handler.describe() + (", i2pd pid %d" % (pid,) if pid is not None else "")

    return describe


def status_printer(who: str, progress: Progress) -> Callable[[str], None]:
    def show(status: str) -> None:
        progress("%s: %s" % (who, status))

    return show


async def dial(handler: i2p.I2PHandler, furl: str, progress: Progress) -> int:
    tub = Tub()
    tub.startService()
    tub.addConnectionHintHandler("i2p", handler)
    try:
        print("dialing %s" % (furl,), flush=True)
        await handler.prepare(status_printer("dialer", progress))
        progress("dialer: connecting to the FURL over I2P")
        t0 = time.monotonic()
        rref = await tub.getReference(furl)
        connected = time.monotonic() - t0
        progress.done()
        transport = rref.tracker.broker.transport
        payload = os.urandom(PAYLOAD)
        t0 = time.monotonic()
        answer = await rref.callRemote("echo", payload)
        called = time.monotonic() - t0
        if answer != payload:
            print("echo returned something else!")
            return 1
        print(
            "connected in %.2f s (role=%s, TLS %s); %d KiB echoed in %.2f s"
            % (connected, transport.role, transport.tlsSide, PAYLOAD // 1024, called)
        )
        return 0
    finally:
        progress.done()
        await tub.stopService()


async def main(reactor: Any, argv: list[str]) -> int:
    """
    Listen (or dial, or both); an exit status.  Failures are raised, and
    everything started is stopped on the way out -- also when Ctrl-C
    cancels this while it waits.
    """
    args = parse_args(argv)
    try:
        handler = make_handler(reactor, args)
    except (i2p.I2PError, ValueError, TypeError) as e:
        print("error: %s" % (e,), file=sys.stderr)
        return 2
    progress = Progress(reactor, describer(handler))

    if args.dial not in (None, "self"):
        # Only dial someone else's FURL.
        try:
            return await dial(handler, args.dial, progress)
        finally:
            await handler.stop()

    tub = Tub()
    tub.startService()
    tub.addConnectionHintHandler("i2p", handler)
    prepared: Optional[Deferred] = None
    failures: list[Failure] = []
    if args.dial == "self":
        # A second Tub will dial us through the handler's dialing session (a
        # transient destination of its own), which opens while ours does.
        prepared = handler.prepare(status_printer("dialer", progress))
        prepared.addErrback(failures.append)
    try:
        print("listening on I2P (key in %s) through %s" % (args.key_file, handler.describe()), flush=True)
        progress("listener: opening SAM session", " (can take ~20 s)")
        try:
            hint = await i2p.listen(tub, handler, args.key_file)
        finally:
            progress.done()
        tub.setLocation(hint)
        furl = tub.registerReference(Echo(), "echo")
        print("  [%5.1f s] listening" % (progress.elapsed(),))
        print("FURL: %s" % (furl,), flush=True)
        if prepared is not None:
            await prepared
            if failures:
                failures[0].raiseException()
            return await dial(handler, furl, progress)
        print("serving; Ctrl-C to stop", flush=True)
        await Deferred()  # until Ctrl-C cancels it
        return 0  # pragma: no cover
    finally:
        if prepared is not None and not prepared.called:
            prepared.cancel()
        try:
            if tub.running:
                await tub.stopService()
        finally:
            await handler.stop()


def run(reactor: Any) -> Deferred:
    """L{main} until it ends or Ctrl-C; its exit status as SystemExit."""

    def done(code: Any) -> None:
        raise SystemExit(code)

    def failed(f: Failure) -> None:
        if f.check(SystemExit):
            f.raiseException()
        print("error: %s" % (f.getErrorMessage(),), file=sys.stderr, flush=True)
        raise SystemExit(1)

    stopper = Stopper(reactor)
    return stopper.run(lambda: Deferred.fromCoroutine(main(reactor, sys.argv[1:]))).addCallbacks(done, failed)


if __name__ == "__main__":
    task.react(run)
