"""
C{foolscap-sidetls ping}: connect to a FURL with a configuration's
handlers and report what happened to each of its hints, which won, the
TLS side each end took and the round-trip times.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from typing import Any, Optional, Sequence, TextIO

from twisted.internet import defer, task

from foolscap.connection import TubConnector

from .. import config as _config
from ._errors import EXIT_OK, Failed, RemoteError, Usage, cli_words, locally
from ._logging import add_logging_options
from ._nodefile import DIALING_ONLY, config_of, load
from ._output import PROG, Progress, say
from ._service import Caller, describe_side, side_of

#: ping's longest --timeout: Foolscap gives up on a connection after 120 s itself.
MAX_TIMEOUT = 120
#: ping's default --timeout: well inside Foolscap's own limit, so that ping
#: gives up first and reads each hint's status before Foolscap marks them all
#: "abandoned" (which would hide what each was waiting for).
DEFAULT_TIMEOUT = 90
#: How often ping notes each hint's status while it waits, so that it can
#: still say what a hint was doing if Foolscap's own timer gives up first.
WATCH_EVERY = 1.0


def add_to(commands: Any) -> None:
    ping = commands.add_parser(
        "ping", help="connect to a FURL and report what happened to each hint",
        description="Connect to FURL with CONFIG's handlers (default: tcp direct, tor through "
        "127.0.0.1:9050, i2p through SAM at 127.0.0.1:7656), report what happened to each hint, "
        "which won, the TLS side each end took and the round-trip times. Exit status 0 only if the "
        "calls succeeded.",
    )
    ping.add_argument("furl", metavar="FURL")
    ping.add_argument("--config", metavar="CONFIG", help="use this configuration's handlers")
    ping.add_argument("--count", type=int, default=3, metavar="N", help="calls to time (default: 3)")
    ping.add_argument("--interval", type=float, default=0.2, metavar="SECONDS",
                      help="pause between calls (default: 0.2)")
    ping.add_argument("--timeout", type=float, default=float(DEFAULT_TIMEOUT), metavar="SECONDS",
                      help="give up connecting after this long (default: %d; at most %d, Foolscap's "
                      "own limit)" % (DEFAULT_TIMEOUT, MAX_TIMEOUT))
    add_logging_options(ping)


_NO_HANDLER = "not tried: no handler for this hint type (disabled in the configuration, or unknown)"
#: Foolscap's statuses for a hint that is done, one way or the other; any
#: other status (Foolscap's "connecting", a handler's "waiting for tor
#: bootstrap ...") means the hint is still under way.
_FINAL_STATUSES = ("successful", "abandoned", "connection refused")
_FINAL_PREFIXES = ("bad hint: ", "failed to connect: ", "negotiation failed: ")
#: Foolscap's failure when its own connection timer gives up.
_FOOLSCAP_TIMEOUT = "no connection established within client timeout"


def _plain(status: Optional[str], handler: Any, won: bool, not_dialed: Optional[str] = None) -> str:
    """
    Foolscap's connector status for one hint, in plain words.

    @param not_dialed: why the configuration has no handler for the hint's
        type (see L{NodeConfig.why_not_dialed}), which Foolscap's "no
        handler registered" does not say.
    """
    unhandled = "not tried: " + not_dialed if not_dialed else _NO_HANDLER
    if handler is None and status is None:
        return unhandled
    if status is None:
        return "not tried"
    if status == "successful":
        return "connected; this hint won" if won else "connected"
    if status == "abandoned":
        return "abandoned: another hint connected first"
    if status == "connection refused":
        return "refused: nothing accepts connections there"
    if status.startswith("bad hint: "):
        why = status[len("bad hint: "):]
        if why == "no handler registered":
            return unhandled
        return "unusable hint: " + why
    if status.startswith("failed to connect: "):
        return "failed: " + status[len("failed to connect: "):]
    if status.startswith("negotiation failed: "):
        return "reached, but the Foolscap/TLS negotiation failed: " + status[len("negotiation failed: "):]
    if status in ("connecting", "resolving hint", "negotiating"):
        return "gave up while %s" % (status,)
    return "gave up while: " + status


def _under_way(status: Optional[str]) -> bool:
    return status is not None and status not in _FINAL_STATUSES and not status.startswith(_FINAL_PREFIXES)


class _HintWatch:
    """
    Notes what each hint of one connection attempt is doing while ping
    waits.

    When Foolscap's own connection timer gives up, it cancels every hint
    still under way and marks each "abandoned" -- the word it also uses for
    hints that lost to another one -- before ping hears of it.  What a hint
    was waiting for (tor's bootstrap, a SAM session) is then only known from
    these notes, so the report does not depend on whose timer fired first.
    """

    def __init__(self, reactor: Any, info: Any) -> None:
        self._info = info
        #: hint -> the last status seen while it was under way.
        self.last: dict[str, str] = {}
        self._looking = task.LoopingCall(self.look)
        self._looking.clock = reactor

    def start(self) -> None:
        if self._info is not None:
            self._looking.start(WATCH_EVERY, now=True)

    def stop(self) -> None:
        if self._looking.running:
            self._looking.stop()

    def look(self) -> None:
        for hint, status in self._info.connectorStatuses.items():
            if _under_way(status):
                self.last[hint] = status

    def under_way(self) -> Optional[str]:
        """The hints still under way and what each is doing, for L{Progress}; None if none is."""
        if self._info is None:
            return None
        pending = ["%s: %s" % (hint, status) for hint, status in self._info.connectorStatuses.items()
                   if _under_way(status)]
        return "; ".join(pending) or None


def _hint_type(hint: str) -> str:
    from foolscap.connections.tcp import convert_legacy_hint

    return convert_legacy_hint(hint).split(":", 1)[0]


def _report_hints(
    out: TextIO,
    info: Any,
    hints: Sequence[str],
    node: Optional[_config.NodeConfig] = None,
    earlier: Optional[dict[str, str]] = None,
    config: Optional[str] = "",
) -> None:
    """
    @param earlier: each hint's last status while it was under way (see
        L{_HintWatch}), for a hint Foolscap has since marked "abandoned"
        though no other hint won.
    @param config: where the command's configuration is, for L{cli_words}.
    """
    winner = info.winningHint if info is not None else None
    for hint in hints:
        handler = info.connectionHandlers.get(hint) if info is not None else None
        status = info.connectorStatuses.get(hint) if info is not None else None
        if status == "abandoned" and winner is None:
            # Nothing connected: Foolscap gave up on the whole attempt.
            status = (earlier or {}).get(hint)
            words = ("gave up before it connected (Foolscap abandoned the attempt)" if status is None
                     else _plain(status, handler, False))
        else:
            kind = _hint_type(hint)
            not_dialed = node.why_not_dialed(kind) if node is not None and kind in ("tcp", "tor", "i2p") else None
            words = _plain(status, handler, winner == hint, not_dialed)
        say(out, cli_words("  %s: %s" % (hint, words), config))
        if handler:
            say(out, "    via %s" % (handler,))


def _check_ping_options(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise Usage("--count=%d: expected a whole number of calls, at least 1" % (args.count,))
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise Usage("--timeout=%g: expected a number of seconds more than 0 and at most %d (Foolscap's own "
                    "limit for a connection)" % (args.timeout, MAX_TIMEOUT))
    if not (math.isfinite(args.interval) and args.interval >= 0):
        raise Usage("--interval=%g: expected a number of seconds, 0 or more" % (args.interval,))


async def run(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from foolscap.referenceable import SturdyRef

    try:
        sturdy = SturdyRef(args.furl)
    except Exception as e:
        raise Usage("%r is not a FURL (%s); expected pb://TUBID@HINTS/NAME" % (args.furl, e)) from None
    _check_ping_options(args)
    if args.config:
        node = load(args.config)
        source = "handlers from %r" % (node.source,)
    else:
        # Only dials: an empty file would be a listening node, reading
        # ./client.port and looking up this machine's addresses.
        node = _config.from_sections(
            {name: dict(entries) for name, entries in DIALING_ONLY.items()}, source="(defaults)"
        )
        source = "default handlers"
    tub = await _config.create_tub(node, reactor, listen=False)
    try:
        return await _ping_with(reactor, tub, sturdy, args, out, err, source, node)
    finally:
        await tub.stopService()


def _not_ping_service(method: str, e: RemoteError) -> Optional[str]:
    """Why the object at the FURL does not have C{method}, if that is why the call failed."""
    if e.check(AttributeError) and "'remote_%s'" % (method,) in e.text:
        return "it has no '%s' method" % (method,)
    found = re.search(r"method '%s' not defined in ([^\s'\"]+)" % (re.escape(method),), e.text)
    if found and e.check("foolscap.tokens.Violation"):
        return "it has no '%s' method (its interface is %s)" % (method, found.group(1))
    return None


async def _ping_with(
    reactor: Any,
    tub: Any,
    sturdy: Any,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    source: str,
    node: Optional[_config.NodeConfig] = None,
) -> int:
    hints = list(sturdy.locationHints)
    config = config_of(args)
    say(out, "pinging Tub %s at %d hint%s (%s)"
           % (sturdy.tubID, len(hints), "" if len(hints) == 1 else "s", source))
    started = time.monotonic()
    connecting = locally(tub.getReference(sturdy))
    info = tub.getConnectionInfoForFURL(args.furl)
    watch = _HintWatch(reactor, info)
    progress = Progress(reactor, err, poll=watch.under_way)
    connecting.addTimeout(args.timeout, reactor)
    watch.start()
    progress.start()
    try:
        rref = await connecting
    except RemoteError as e:
        _report_hints(out, info, hints, node, config=config)
        if e.check(KeyError) and "unable to find reference for name" in e.text:
            raise Failed("connected to Tub %s, but it has no object with this FURL's name (swissnum): the "
                         "FURL is mistyped or out of date, or the object is no longer registered there"
                         % (sturdy.tubID,)) from None
        raise Failed("connected to Tub %s, but it refused the reference: %s" % (sturdy.tubID, e)) from None
    except Exception as e:
        _report_hints(out, info, hints, node, watch.last, config)
        if isinstance(e, defer.TimeoutError):
            why = "no connection within %g s" % (args.timeout,)
        elif str(e) == _FOOLSCAP_TIMEOUT:
            why = "no connection within %g s (Foolscap's own limit for a connection)" % (
                TubConnector.CONNECTION_TIMEOUT,)
        else:
            why = str(e) or repr(e)
        raise Failed("could not connect: " + why) from None
    finally:
        watch.stop()
        progress.stop()
    connected = time.monotonic() - started
    info = rref.getConnectionInfo()
    _report_hints(out, info, hints, node, config=config)
    say(out, "connected in %.2f s through %s" % (connected, info.winningHint))
    say(out, "this end:  %s" % (describe_side(side_of(rref.tracker.broker.transport)),))
    try:
        theirs = await locally(rref.callRemote("whoami", Caller()))
    except RemoteError as e:
        say(out, "other end: unknown")
        missing = _not_ping_service("whoami", e)
        if missing is not None:
            raise Failed("connected, but the object at this FURL is not a %s ping service: %s"
                         % (PROG, missing)) from None
        raise Failed("connected, but the 'whoami' call failed at the other end: %s" % (e,)) from None
    except Exception as e:
        say(out, "other end: unknown")
        raise Failed("connected, but the 'whoami' call failed: %s" % (str(e) or repr(e),)) from None
    say(out, "other end: %s (%s)" % (describe_side(theirs), theirs.get("software", "unknown software")))
    times = []
    for number in range(1, args.count + 1):
        sent = time.perf_counter()
        try:
            payload = b"ping %d" % (number,)
            echoed = await locally(rref.callRemote("ping", payload))
        except RemoteError as e:
            raise Failed("call %d failed at the other end: %s" % (number, e)) from None
        except Exception as e:
            raise Failed("call %d failed: %s" % (number, str(e) or repr(e))) from None
        took = (time.perf_counter() - sent) * 1000
        if echoed != payload:
            raise Failed("call %d came back altered" % (number,))
        times.append(took)
        say(out, "ping %d: %.2f ms" % (number, took))
        if number < args.count and args.interval > 0:
            await task.deferLater(reactor, args.interval, lambda: None)
    say(out, "%d of %d calls answered; round trip min/avg/max = %.2f/%.2f/%.2f ms"
           % (len(times), args.count, min(times), sum(times) / len(times), max(times)))
    return EXIT_OK


