"""
A Foolscap Tub on a Tor onion service, with foolscap-sidetls: listen on an
onion, print the FURL, and optionally dial it (through Tor) and call it.

Needs tor (Debian/Ubuntu: ``apt-get install tor``) and txtorcon
(``pip install 'foolscap-sidetls[tor]'``).

Use the system tor through its control port (enable it in
/etc/tor/torrc with ``ControlPort 9051`` and ``CookieAuthentication 1``,
restart tor, and make sure this user can read the cookie -- on Debian/Ubuntu
by being in the group ``debian-tor``)::

    .venv/bin/python examples/tor_onion.py --control tcp:127.0.0.1:9051

or let the example start a tor of its own (kept in --data-dir, so a second
run bootstraps faster)::

    .venv/bin/python examples/tor_onion.py --launch --data-dir ~/.cache/sidetls-tor

Then it prints the FURL and serves until Ctrl-C.  Other options:

    --dial            also connect to the FURL through Tor, call it with a
                      64 KiB payload, print the timings, and exit (status 0
                      on success)
    --dial FURL       only dial someone else's FURL and call "echo" on it
    --key-file PATH   keep the onion's key there: the same .onion address
                      (and FURL) on every run
    --torrc KEY=VALUE extra torrc option for --launch (repeatable), e.g. to
                      join a private test network

Every connection's TLS side is taken from its role: the listening Tub is the
TLS server, the dialing one the TLS client.  Progress (launching tor,
bootstrap percentage, descriptor publication) is printed as it happens, and
every 10 seconds a step is still waiting, the example says on what.
Publishing a new onion on the real Tor network takes from a few seconds to
a minute or two, and the first connection to it about as long.

Ctrl-C (or SIGTERM) stops it at any point, as ``foolscap-sidetls serve``
does: it prints "stopping...", stops the Tub and the tor it launched,
prints "stopped" and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any, Callable, Optional

from zope.interface import implementer
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.python.failure import Failure
from foolscap.api import Referenceable, Tub
from foolscap.ipb import IConnectionHintHandler

from foolscap_sidetls import tor

PAYLOAD = 64 * 1024
SELF_TEST_TIMEOUT = 600
#: How often a step that is still under way says so (tor can sit at one
#: bootstrap percentage for minutes, and silence looks like a hang).
STILL_WAITING = 10


class Echo(Referenceable):  # type: ignore[misc]
    def remote_echo(self, data: bytes) -> bytes:
        return data


class Progress:
    """
    Prints each status with the time since the start, and while a step is
    under way, every L{STILL_WAITING} seconds which one it still is and
    what it waits on (C{describe()}: the launched tor's pid, say).
    """

    def __init__(self, reactor: Any, describe: Callable[[], str]) -> None:
        self._started = time.monotonic()
        self._describe = describe
        self._waiting: Optional[str] = None
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __call__(self, status: str) -> None:
        self._waiting = status
        print("  [%5.1f s] %s" % (self.elapsed(), status), flush=True)
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
    stop cancels the work, waits for its cleanup (Tub and tor stopped),
    and is no error: exit status 0, as for C{foolscap-sidetls serve}.

    A tor started with --launch is in our process group, so the terminal's
    Ctrl-C reaches it too and it exits at once: its control connection can
    close before the reactor gets to its shutdown triggers, and what that
    breaks would be reported as a failure.  So the signal is noted the
    moment it arrives, and anything that fails after it is part of
    stopping.
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


def _handler(args: argparse.Namespace, reactor: Any) -> tor.TorHandler:
    if args.launch:
        extra = {}
        for option in args.torrc:
            key, _, value = option.partition("=")
            extra.setdefault(key, []).append(value)
        return tor.launch(data_directory=args.data_dir, extra_config=extra or None)
    return tor.control_endpoint(clientFromString(reactor, args.control))


@implementer(IConnectionHintHandler)
class _Printer:
    """A hint handler wrapper that prints each status Foolscap is given."""

    def __init__(self, inner: tor.TorHandler, progress: Progress) -> None:
        self.inner = inner
        self.progress = progress

    def hint_to_endpoint(self, hint: str, reactor: Any, update_status: Any) -> Any:
        def status(text: str) -> None:
            self.progress(text)
            update_status(text)

        return self.inner.hint_to_endpoint(hint, reactor, status)

    def describe(self) -> str:
        return self.inner.describe()


async def _call(furl: str, handler: tor.TorHandler, progress: Progress) -> None:
    dialing = Tub()
    dialing.startService()
    try:
        dialing.removeAllConnectionHintHandlers()
        dialing.addConnectionHintHandler("tor", _Printer(handler, progress))
        t0 = time.monotonic()
        print("dialing %s" % (furl,), flush=True)
        rref = await dialing.getReference(furl)
        progress.done()
        print(
            "connected in %.1f s (we are the TLS %s)"
            % (time.monotonic() - t0, rref.tracker.broker.transport.tlsSide),
            flush=True,
        )
        payload = os.urandom(PAYLOAD)
        t0 = time.monotonic()
        answer = await rref.callRemote("echo", payload)
        if answer != payload:
            raise RuntimeError("the echo came back different")
        print("echoed %d bytes in %.1f s" % (len(payload), time.monotonic() - t0), flush=True)
    finally:
        progress.done()
        await dialing.stopService()


async def main(reactor: Any, args: argparse.Namespace) -> int:
    """
    Serve (or dial, or both); an exit status.  Failures are raised, and
    everything started is stopped on the way out -- also when Ctrl-C
    cancels this while it waits.
    """
    handler = _handler(args, reactor)
    progress = Progress(reactor, handler.describe)
    try:
        if isinstance(args.dial, str):
            await _call(args.dial, handler, progress)
            return 0

        tub = Tub()
        tub.startService()
        try:
            print("publishing an onion service via %s ..." % (handler.describe(),), flush=True)
            try:
                hint = await tor.listen(
                    tub, handler, private_key_file=args.key_file, update_status=progress
                )
            finally:
                progress.done()
            tub.setLocation(hint)
            furl = tub.registerReference(Echo(), "echo")
            print(
                "published in %.1f s; listening as the TLS server on %s"
                % (progress.elapsed(), hint)
            )
            print(furl, flush=True)

            if args.dial is True:
                await _call(furl, handler, progress)
                return 0

            print("serving until Ctrl-C", flush=True)
            await Deferred()  # until Ctrl-C cancels it
            return 0  # pragma: no cover
        finally:
            await tub.stopService()
    finally:
        await handler.stop()


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--control",
        default="tcp:127.0.0.1:9051",
        help="tor control port endpoint (default %(default)s)",
    )
    how.add_argument("--launch", action="store_true", help="start a tor of our own")
    parser.add_argument("--data-dir", help="DataDirectory for --launch (kept between runs)")
    parser.add_argument(
        "--torrc",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra torrc option for --launch",
    )
    parser.add_argument("--key-file", help="onion key file: the same address on every run")
    parser.add_argument(
        "--dial",
        nargs="?",
        const=True,
        default=False,
        metavar="FURL",
        help="dial our own FURL (or FURL) and call it",
    )
    args = parser.parse_args(argv)
    for option in args.torrc:
        key, sep, _ = option.partition("=")
        if not sep or not key:
            parser.error("--torrc %r: expected KEY=VALUE, a torrc option and its value" % (option,))
    return args


def run(reactor: Any, arguments: argparse.Namespace) -> Deferred:
    """L{main} until it ends or Ctrl-C; its exit status as SystemExit."""

    def start() -> Deferred:
        d = Deferred.fromCoroutine(main(reactor, arguments))
        if arguments.dial is not False:
            d.addTimeout(SELF_TEST_TIMEOUT, reactor)
        return d

    def done(code: int) -> None:
        if code:
            raise SystemExit(code)

    def failed(f: Failure) -> None:
        if f.check(SystemExit):
            f.raiseException()
        print("error: %s" % (f.getErrorMessage(),), file=sys.stderr, flush=True)
        raise SystemExit(1)

    return Stopper(reactor).run(start).addCallbacks(done, failed)


if __name__ == "__main__":
    task.react(run, (parse(),))
