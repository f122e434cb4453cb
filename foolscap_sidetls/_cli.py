"""
The C{foolscap-sidetls} command: check a Tahoe-LAFS-style configuration,
create one, serve a small ping/echo object with it, and ping a FURL saying
what happened to each of its hints.

Exit status: 0 on success, 1 when a connection (or a start) failed, 2 for
usage and configuration errors -- so scripts can tell "fix the file" from
"the network is down".
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import sys
import time
from typing import Any, Callable, NoReturn, Optional, Sequence, TextIO

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorCore
from twisted.python.failure import Failure

from foolscap.api import Referenceable, RemoteException
from foolscap.call import CopiedFailure
from foolscap.connection import TubConnector
from foolscap.util import allocate_tcp_port

from . import _onion, config as _config
from ._files import write_private
from ._interfaces import ISideTLSTransport
from ._version import __version__

PROG = "foolscap-sidetls"
#: The config file create-node writes, and what a directory argument means.
CONFIG_NAME = "node.cfg"
#: Where serve keeps the ping service's FURL (so it is the same every run).
PING_FURL_FILE = os.path.join("private", "ping.furl")
#: Tahoe-LAFS's default onion and I2P ports.
DEFAULT_EXTERNAL_PORT = 3457
#: Where create-node looks for a running tor's control port, as Tahoe-LAFS does.
TOR_CONTROL_PORTS = ("unix:/var/run/tor/control", "tcp:127.0.0.1:9051", "tcp:127.0.0.1:9151")
#: How often serve says it is still waiting on a slow step.
STILL_WAITING = 15.0
#: ping's longest --timeout: Foolscap gives up on a connection after 120 s itself.
MAX_TIMEOUT = 120
#: ping's default --timeout: well inside Foolscap's own limit, so that ping
#: gives up first and reads each hint's status before Foolscap marks them all
#: "abandoned" (which would hide what each was waiting for).
DEFAULT_TIMEOUT = 90
#: How often ping notes each hint's status while it waits, so that it can
#: still say what a hint was doing if Foolscap's own timer gives up first.
WATCH_EVERY = 1.0

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Usage(Exception):
    """A usage or configuration problem: exit status 2."""


class _Failed(Exception):
    """A connection or start failure: exit status 1."""


# -- the ping service ---------------------------------------------------------------


def _side_of(transport: Any) -> dict[str, Optional[str]]:
    if ISideTLSTransport.providedBy(transport):
        return {"role": transport.role, "tls_side": transport.tlsSide}
    return {"role": None, "tls_side": None}


class PingService(Referenceable):
    """
    What C{serve} registers: an echo, and a report of how this end sees the
    caller's connection (its role and TLS side), which only the server
    knows.
    """

    def remote_ping(self, data: bytes = b"") -> bytes:
        return data

    def remote_whoami(self, caller: Any) -> dict[str, Any]:
        # The caller passes one of its own objects; our reference to it
        # rides on the very connection the caller dialed, so its broker's
        # transport is this end of that connection.
        seen = _side_of(caller.tracker.broker.transport)
        seen["software"] = "%s %s" % (PROG, __version__)
        return seen


class _Caller(Referenceable):
    """Passed to C{whoami} so the server can find our connection."""


# -- small helpers ---------------------------------------------------------------------


def _config_path(argument: str) -> str:
    """A config file, or a node directory holding node.cfg (or a Tahoe tahoe.cfg)."""
    if os.path.isdir(argument):
        for name in (CONFIG_NAME, "tahoe.cfg"):
            candidate = os.path.join(argument, name)
            if os.path.exists(candidate):
                return candidate
        return os.path.join(argument, CONFIG_NAME)
    return argument


def _load(argument: str) -> _config.NodeConfig:
    try:
        return _config.load(_config_path(argument))
    except _config.ConfigError as e:
        raise _Usage(str(e)) from None


def _print(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


class _RemoteError(Exception):
    """
    An exception raised at the other end of a Foolscap call (or reference
    lookup), as a local exception a coroutine can catch.

    @ivar kind: the remote exception's class name (C{ValueError}; a
        non-builtin one with its module, C{foolscap.tokens.Violation}).
    @ivar text: its message.
    """

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        qualified = failure.parents[0] if failure.parents else str(failure.type)
        self.kind = qualified[len("builtins."):] if qualified.startswith("builtins.") else qualified
        self.text = str(failure.value)
        super().__init__("%s: %s" % (self.kind, self.text) if self.text else self.kind)

    def check(self, *kinds: Any) -> bool:
        return self.failure.check(*kinds) is not None


def _locally(d: Deferred) -> Deferred:
    """
    C{d}, with a remote failure turned into a L{_RemoteError}.

    Foolscap fails a remote call (and a getReference whose swissnum the
    other Tub does not know) with a C{CopiedFailure}, whose C{value} is a
    string: awaiting that inside a coroutine makes Twisted itself crash
    while re-raising it, so it must become a real exception first.  (With
    C{expose-remote-exception-types} off, the C{CopiedFailure} comes
    wrapped in a C{RemoteException}.)
    """

    def local(failure: Failure) -> Failure:
        wrapper = failure.value
        if isinstance(wrapper, RemoteException):
            failure = wrapper.failure
        if isinstance(failure, CopiedFailure):
            raise _RemoteError(failure)
        return failure

    return d.addErrback(local)


# -- the command line's words for the library's advice ---------------------------------

#: Advice in the library's messages that names its Python API, and what the
#: command says instead: the create-node option, and the configuration key
#: (with where the configuration is) -- which that option writes.
_API_ADVICE = (
    ("let foolscap_sidetls.tor.launch() start a tor of its own",
     "pass --tor-launch to start a tor of its own",
     "set [tor] launch = true in %s to start a tor of its own", "--tor-launch"),
    ("let foolscap_sidetls.i2p.launch() start an i2pd of its own",
     "pass --i2p-launch to start an i2pd of its own",
     "set [i2p] launch = true (with no sam.port) in %s to start an i2pd of its own", "--i2p-launch"),
    ("pass tor_binary='/path/to/tor'", "pass --tor-executable=/path/to/tor",
     "set [tor] tor.executable = /path/to/tor in %s", "--tor-launch --tor-executable=/path/to/tor"),
    ("pass executable='/path/to/i2pd'", "pass --i2p-executable=/path/to/i2pd",
     "set [i2p] i2p.executable = /path/to/i2pd in %s", "--i2p-launch --i2p-executable=/path/to/i2pd"),
)


def _cli_words(text: str, config: Optional[str]) -> str:
    """
    C{text} with the library's Python-API advice in command-line words.

    @param config: the configuration file the command uses (for its keys),
        C{""} for ping's defaults (no file: the advice says how to make
        one), or L{None} for create-node (whose options write those keys).
    """
    for api, option, key, writes in _API_ADVICE:
        if api not in text:
            continue
        if config is None:
            words = option
        elif config:
            words = key % (repr(config),)
        else:
            words = key % ("a file passed with --config (%s create-node DIR --listen=none %s writes one)"
                           % (PROG, writes),)
        text = text.replace(api, words)
    return text


def _config_of(args: argparse.Namespace) -> Optional[str]:
    """What L{_cli_words} needs to know of the command: see its C{config}."""
    if args.command == "create-node":
        return None
    argument = getattr(args, "config", None)
    return _config_path(argument) if argument else ""


# -- check ---------------------------------------------------------------------------


async def _check(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    node = _load(args.config)
    _print(out, "%r is valid." % (node.source,))
    for line in node.describe():
        _print(out, line)
    return EXIT_OK


# -- create-node -----------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.")


def _reachable(description: str) -> bool:
    """Whether something accepts connections at a loopback/UNIX client endpoint."""
    kind, _, rest = description.partition(":")
    try:
        if kind == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(rest)
            return True
        host, _, port = rest.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _check_create_options(args: argparse.Namespace) -> list[str]:
    listen = [w.strip() for w in args.listen.split(",") if w.strip()]
    for word in listen:
        if word not in ("tcp", "tor", "i2p", "none"):
            raise _Usage("--listen=%s: unknown listener %r; expected tcp, tor, i2p (comma-separated) or none"
                         % (args.listen, word))
    if not listen:
        raise _Usage("--listen is empty; expected tcp, tor, i2p (comma-separated) or none")
    if "none" in listen and len(listen) > 1:
        raise _Usage("--listen=none cannot be combined with other listeners")
    if "tcp" in listen:
        # With --hide-ip, only an explicit --port (on loopback, as checked
        # below) and --location (tor:/i2p: hints) make sense: an onion
        # service configured in torrc, forwarding to this machine only.
        if args.hide_ip and not args.port:
            raise _Usage("--hide-ip cannot be used with --listen=tcp (a tcp: hint reveals this machine's address); "
                         "try --listen=tor")
        if args.hostname and (args.port or args.location):
            raise _Usage("--hostname cannot be used with --port/--location (they say where, explicitly)")
        if bool(args.port) != bool(args.location):
            raise _Usage("--port and --location go together (--port says where to listen, --location what "
                         "to announce)")
        if not args.hostname and not args.port:
            raise _Usage("--listen=tcp needs --hostname=NAME (what other machines call this one), "
                         "or --port=ENDPOINT and --location=HINTS")
    elif args.hostname or args.port or args.location:
        raise _Usage("--hostname, --port and --location are for --listen=tcp")
    if args.tor_launch and args.tor_control_port:
        raise _Usage("use either --tor-launch or --tor-control-port, not both")
    if args.i2p_launch and args.i2p_sam_port:
        raise _Usage("use either --i2p-launch or --i2p-sam-port, not both")
    # A dial-only node may bring its own tor or i2pd (or name the running
    # one) for the hints it dials; a tcp listener's tor options would be
    # unused without --hide-ip.
    dial_only = listen == ["none"]
    if _tor_options(args) and not (_uses_tor(listen, args) or dial_only):
        raise _Usage("--tor-* options need --listen=tor or --hide-ip")
    if _i2p_options(args) and not ("i2p" in listen or dial_only):
        raise _Usage("--i2p-* options need --listen=i2p")
    if args.tor_executable and not args.tor_launch:
        raise _Usage("--tor-executable needs --tor-launch")
    if args.i2p_executable and not args.i2p_launch:
        raise _Usage("--i2p-executable needs --i2p-launch")
    _check_values(args)
    return listen


def _uses_tor(listen: list[str], args: argparse.Namespace) -> bool:
    return "tor" in listen or bool(args.hide_ip)


def _tor_options(args: argparse.Namespace) -> bool:
    return bool(args.tor_launch or args.tor_control_port or args.tor_executable)


def _i2p_options(args: argparse.Namespace) -> bool:
    return bool(args.i2p_launch or args.i2p_sam_port or args.i2p_executable or args.i2cp_options)


#: A configuration piece that only dials: checking one option must not
#: read ./client.port or look up this machine's addresses.
_DIALING_ONLY = "[node]\ntub.port = disabled\ntub.location = disabled\n"
#: The config keys create-node's options become, as messages name them.
_OPTION_OF_KEY = {
    "[tor] tor.executable": "--tor-executable",
    "[i2p] i2p.executable": "--i2p-executable",
    "[node] reveal-IP-address = false": "--hide-ip (reveal-IP-address = false)",
}


def _absolute(path: Optional[str]) -> Optional[str]:
    """
    An executable as written to the file: a path made absolute (the file
    resolves relative ones from the node directory, the user meant the
    current one), a bare name left to the PATH search.
    """
    if path is None or os.sep not in path:
        return path
    return os.path.abspath(path)


def _check_values(args: argparse.Namespace) -> None:
    """
    Check each value create-node would write by the config module's own
    rules, on the piece of the file it becomes: a usage error naming the
    option, before anything is made, rather than a file 'check' refuses.
    """
    written = [
        ("--hostname", args.hostname), ("--port", args.port), ("--location", args.location),
        ("--tor-executable", args.tor_executable), ("--tor-control-port", args.tor_control_port),
        ("--i2p-executable", args.i2p_executable), ("--i2p-sam-port", args.i2p_sam_port),
        ("--i2cp-options", args.i2cp_options),
    ]
    for option, value in written:
        if value is not None and ("\n" in value or "\r" in value):
            raise _Usage("%s=%r: has a line break; expected a value on one line" % (option, value))
    if args.hostname:
        if ":" in args.hostname:
            raise _Usage(
                "--hostname=%s: an IPv6 address, but create-node listens on IPv4 (tcp:PORT); expected a DNS "
                "name or an IPv4 address, or --port=tcp6:PORT with --location=tcp:[ADDRESS]:PORT" % (args.hostname,)
            )
        try:
            _config.from_string("[node]\ntub.port = tcp:1\ntub.location = tcp:%s:1\n" % (args.hostname,))
        except _config.ConfigError:
            raise _Usage(
                "--hostname=%s: not a name a tcp: hint can carry; expected a DNS name (letters, digits, '-' "
                "and '.') or an IPv4 address" % (args.hostname,)
            ) from None
    if args.port:
        # As the file will say it: with --hide-ip, the listener must stay on
        # loopback and the location announce no tcp: hint.
        piece = "[node]\ntub.port = %s\ntub.location = %s\n" % (args.port, args.location)
        if args.hide_ip:
            piece += "reveal-IP-address = false\n[connections]\ntcp = tor\n"
        _as_config("--port=" + args.port, piece, only="tub.port")
        _as_config("--location=" + args.location, piece)
    if args.tor_launch:
        executable = _absolute(args.tor_executable)
        _as_config("--tor-executable=" + args.tor_executable if args.tor_executable else "--tor-launch",
                   _DIALING_ONLY + "[tor]\nlaunch = true\n"
                   + ("tor.executable = %s\n" % (executable,) if executable else ""))
    if args.tor_control_port:
        _as_config("--tor-control-port=" + args.tor_control_port,
                   _DIALING_ONLY + "[tor]\ncontrol.port = %s\n" % (args.tor_control_port,))
    if args.i2p_launch:
        executable = _absolute(args.i2p_executable)
        _as_config("--i2p-executable=" + args.i2p_executable if args.i2p_executable else "--i2p-launch",
                   _DIALING_ONLY + "[i2p]\nlaunch = true\n"
                   + ("i2p.executable = %s\n" % (executable,) if executable else ""))
    if args.i2p_sam_port:
        _as_config("--i2p-sam-port=" + args.i2p_sam_port,
                   _DIALING_ONLY + "[i2p]\nsam.port = %s\n" % (args.i2p_sam_port,))
    if args.i2cp_options:
        _as_config("--i2cp-options=" + args.i2cp_options,
                   _DIALING_ONLY + "[i2p]\ni2cp.options = %s\n" % (args.i2cp_options,))


def _as_config(shown: str, text: str, only: Optional[str] = None) -> None:
    """
    Load C{text} (a piece of the file create-node would write) as 'check'
    would; a usage error for C{shown} if it is refused (only for problems
    with key C{only}, if given).
    """
    try:
        _config.from_string(text, source=PROG, local_addresses=lambda: ["127.0.0.1"])
    except _config.ConfigError as e:
        if only is not None and e.key != only:
            return
        problem = e.problem
        for key, option in _OPTION_OF_KEY.items():
            problem = problem.replace(key, option)
        raise _Usage("%s: %s" % (shown, problem)) from None


def _i2p_handler(reactor: Any, args: argparse.Namespace, basedir: str) -> Any:
    """The I2P handler create-node asks for a destination key: the one serve will use."""
    from . import i2p

    if args.i2p_launch:
        return i2p.launch(
            _absolute(args.i2p_executable), os.path.join(basedir, _config.I2P_STATEDIR), reactor=reactor
        )
    if args.i2p_sam_port:
        return i2p.sam_endpoint(clientFromString(reactor, args.i2p_sam_port), reactor=reactor)
    return i2p.default(reactor)


async def _make_i2p_key(reactor: Any, args: argparse.Namespace, basedir: str, keyfile: str, out: TextIO) -> str:
    """Have the SAM bridge make a destination key, as Tahoe-LAFS does; its .b32.i2p address."""
    from . import i2p

    handler = _i2p_handler(reactor, args, basedir)
    _print(out, "connecting to the I2P router's SAM bridge at %s (to make the destination key)..."
           % (handler.sam_where,))
    try:
        key = await handler.new_destination_key()
    except i2p.I2PError as e:
        raise _Failed("could not make an I2P destination key: %s" % (e,)) from None
    finally:
        await handler.stop()
    write_private(keyfile, key)
    return i2p.address_of(keyfile)


async def _create_node(
    reactor: Any,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> int:
    listen = _check_create_options(args)
    basedir = os.path.abspath(args.directory)
    if os.path.exists(basedir) and (not os.path.isdir(basedir) or os.listdir(basedir)):
        raise _Usage("%s exists and is not an empty directory; to avoid clobbering anything, "
                     "create-node wants a new one" % (basedir,))
    path = os.path.join(basedir, CONFIG_NAME)
    tor_control = args.tor_control_port
    if "tor" in listen and not args.tor_launch and not tor_control:
        for candidate in TOR_CONTROL_PORTS:
            if _reachable(candidate):
                tor_control = candidate
                break
        else:
            raise _Failed("no tor control port answered at %s; pass --tor-control-port=ENDPOINT "
                          "(or --tor-launch)" % (", ".join(TOR_CONTROL_PORTS),))

    created_dir = not os.path.exists(basedir)
    os.makedirs(os.path.join(basedir, "private"), mode=0o700, exist_ok=True)
    try:
        return await _write_node(reactor, args, listen, basedir, path, tor_control, out)
    except BaseException:
        # Leave nothing half made: the directory was new or empty.
        if created_dir:
            shutil.rmtree(basedir, ignore_errors=True)
        else:
            for name in os.listdir(basedir):
                target = os.path.join(basedir, name)
                if os.path.isdir(target):
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    os.remove(target)
        raise


async def _write_node(
    reactor: Any,
    args: argparse.Namespace,
    listen: list[str],
    basedir: str,
    path: str,
    tor_control: Optional[str],
    out: TextIO,
) -> int:
    ports: list[str] = []
    hints: list[str] = []
    sections: dict[str, list[tuple[str, str]]] = {"node": [], "connections": [], "tor": [], "i2p": []}
    if "tcp" in listen:
        if args.port:
            ports.append(args.port)
            hints.append(args.location)
        else:
            port = allocate_tcp_port()
            # A loopback name can only be reached from this machine: listen
            # there only, rather than on every interface.
            if _is_loopback(args.hostname):
                ports.append("tcp:%d:interface=%s" % (port, "127.0.0.1" if args.hostname == "localhost" else args.hostname))
            else:
                ports.append("tcp:%d" % (port,))
            hints.append("tcp:%s:%d" % (args.hostname, port))
    if _uses_tor(listen, args) or _tor_options(args):
        if args.tor_launch:
            sections["tor"].append(("launch", "true"))
            if args.tor_executable:
                sections["tor"].append(("tor.executable", str(_absolute(args.tor_executable))))
        elif tor_control:
            sections["tor"].append(("control.port", tor_control))
    if "tor" in listen:
        key, onion = _onion.new_key()
        keyfile = os.path.join("private", "tor_onion.privkey")
        write_private(os.path.join(basedir, keyfile), key + "\n")
        local_port = allocate_tcp_port()
        ports.append("tcp:%d:interface=127.0.0.1" % (local_port,))
        hints.append("tor:%s:%d" % (onion, DEFAULT_EXTERNAL_PORT))
        sections["tor"] += [
            ("onion", "true"),
            ("onion.local_port", str(local_port)),
            ("onion.external_port", str(DEFAULT_EXTERNAL_PORT)),
            ("onion.private_key_file", keyfile),
        ]
        _print(out, "made the onion service key: %s" % (onion,))
    if "i2p" in listen:
        keyfile = os.path.join("private", "i2p_dest.privkey")
        address = await _make_i2p_key(reactor, args, basedir, os.path.join(basedir, keyfile), out)
        _print(out, "made the I2P destination key: %s" % (address,))
        sections["i2p"] += _i2p_entries(args, default_sam="tcp:127.0.0.1:7656")
        sections["i2p"] += [
            ("dest", "true"),
            ("dest.port", str(DEFAULT_EXTERNAL_PORT)),
            ("dest.private_key_file", keyfile),
        ]
        ports.append("listen:i2p")
        hints.append("i2p:%s:%d" % (address, DEFAULT_EXTERNAL_PORT))
    if listen == ["none"]:
        ports, hints = ["disabled"], ["disabled"]
        sections["i2p"] += _i2p_entries(args)
    sections["node"] += [("tub.port", ",".join(ports)), ("tub.location", ",".join(hints))]
    if args.hide_ip:
        sections["node"].append(("reveal-IP-address", "false"))
        sections["connections"].append(("tcp", "tor"))

    lines = [
        "# -*- mode: conf; coding: utf-8 -*-",
        "# Written by '%s create-node'.  The keys mean what they mean in" % (PROG,),
        "# Tahoe-LAFS's tahoe.cfg; check this file with '%s check %s'." % (PROG, path),
        "",
    ]
    for section, entries in sections.items():
        if not entries and section != "node":
            continue
        lines.append("[%s]" % (section,))
        lines += ["%s = %s" % kv for kv in entries]
        if section == "node":
            lines += ["#timeout.keepalive =", "#timeout.disconnect ="]
        lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    # What was written must load: the same check 'serve' will do.  The
    # options were checked one by one; what they make together is checked
    # here, and refusing it removes everything (see _create_node).
    try:
        _config.load(path)
    except _config.ConfigError as e:
        raise _Usage("these options make a configuration 'check' refuses: %s" % (e,)) from None
    _print(out, "created %s" % (path,))
    _print(out, "  tub.port = %s" % (",".join(ports),))
    _print(out, "  tub.location = %s" % (",".join(hints),))
    if listen == ["none"]:
        _print(out, "this node only dials, so there is nothing to serve; reach a FURL with its handlers: "
               "%s ping --config %s FURL" % (PROG, path))
    else:
        _print(out, "serve it with: %s serve %s" % (PROG, path))
    return EXIT_OK


def _i2p_entries(args: argparse.Namespace, default_sam: Optional[str] = None) -> list[tuple[str, str]]:
    """The [i2p] keys that say how this node reaches I2P (which SAM bridge, with which options)."""
    entries: list[tuple[str, str]] = []
    if args.i2p_launch:
        entries.append(("launch", "true"))
        if args.i2p_executable:
            entries.append(("i2p.executable", str(_absolute(args.i2p_executable))))
    else:
        sam = args.i2p_sam_port or default_sam
        if sam:
            entries.append(("sam.port", sam))
    if args.i2cp_options:
        entries.append(("i2cp.options", args.i2cp_options))
    return entries


# -- serve ----------------------------------------------------------------------------


class _Progress:
    """
    Prints each slow step once, and how long the current one has taken.

    @param poll: for a caller that cannot be told of each step (ping, which
        only sees Foolscap's per-hint statuses): asked for the current step
        (L{None} when nothing is under way) every L{STILL_WAITING} seconds,
        so at most one line is printed per period and a quick success none.
    """

    def __init__(self, reactor: Any, out: TextIO, poll: Optional[Callable[[], Optional[str]]] = None) -> None:
        self._reactor = reactor
        self._out = out
        self._poll = poll
        self._started = reactor.seconds()
        self._last: Optional[str] = None
        self._since = self._started
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    def start(self) -> None:
        self._ticker.start(STILL_WAITING, now=False)

    def stop(self) -> None:
        if self._ticker.running:
            self._ticker.stop()

    def elapsed(self) -> float:
        return float(self._reactor.seconds() - self._started)

    def __call__(self, status: str) -> None:
        if status == self._last:
            return
        self._last = status
        self._since = self._reactor.seconds()
        _print(self._out, "  [%5.1f s] %s" % (self.elapsed(), status))

    def _tick(self) -> None:
        if self._poll is not None:
            status = self._poll()
            if status is None:
                return
            if status != self._last:
                self(status)
                return
            still = status
        elif self._last is None:
            return
        else:
            still = self._last.split(": ", 1)[-1]
        _print(self._out, "  [%5.1f s] ... still %s" % (self.elapsed(), still))


async def _serve(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from foolscap.pb import WrongTubIdError

    node = _load(args.config)
    if not node.listening:
        raise _Usage("%r [node] tub.port = 'disabled': this Tub only dials, so there is nothing to serve; "
                     "set tub.port and tub.location (or use 'create-node')" % (node.source,))
    _print(out, "%s %s serving %r (pid %d)" % (PROG, __version__, node.source, os.getpid()))
    for warning in node.warnings:
        _print(out, "warning: " + warning)
    progress = _Progress(reactor, out)
    progress.start()
    try:
        starting = _config.create_tub(node, reactor, update_status=progress)
    except _config.ConfigError as e:  # a key file changed since it was loaded
        progress.stop()
        raise _Usage(str(e)) from None
    started: list[Any] = []

    def shutdown() -> Deferred:
        # Ctrl-C or SIGTERM: stop the Tub, or the start still under way
        # (which then stops everything it had started), before exiting.
        progress.stop()
        _print(out, "stopping...")
        if started:
            d = started[0].stopService() if started[0].running else defer.succeed(None)
        else:
            starting.cancel()
            d = starting
        return d.addErrback(lambda _: None).addCallback(lambda _: _print(out, "stopped"))

    trigger = reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    try:
        tub = await starting
    except defer.CancelledError:
        return EXIT_OK
    except _config.StartError as e:
        reactor.removeSystemEventTrigger(trigger)
        raise _Failed(str(e)) from None
    finally:
        progress.stop()
    started.append(tub)
    furl_file = os.path.join(node.basedir, PING_FURL_FILE)
    service = PingService()
    try:
        furl = tub.registerReference(service, furlFile=furl_file)
    except WrongTubIdError:
        os.remove(furl_file)  # the Tub's certificate was replaced: a new FURL
        furl = tub.registerReference(service, furlFile=furl_file)
    for line in node.describe_listeners():
        _print(out, "listening: " + line)
    _print(out, "location: " + ",".join(tub.locationHints))
    _print(out, "furl: " + furl)
    _print(out, "ready after %.1f s; try '%s ping %s'; Ctrl-C stops" % (progress.elapsed(), PROG, furl))
    await Deferred()  # until the reactor stops (SIGINT, SIGTERM)
    return EXIT_OK  # pragma: no cover


# -- ping -----------------------------------------------------------------------------


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
        """The hints still under way and what each is doing, for L{_Progress}; None if none is."""
        if self._info is None:
            return None
        pending = ["%s: %s" % (hint, status) for hint, status in self._info.connectorStatuses.items()
                   if _under_way(status)]
        return "; ".join(pending) or None


def _describe_side(side: dict[str, Any]) -> str:
    if side.get("role") is None:
        return "not role-based (its TLS side came from the socket direction)"
    return "%s, TLS %s" % (side["role"], side["tls_side"])


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
    @param config: where the command's configuration is, for L{_cli_words}.
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
        _print(out, _cli_words("  %s: %s" % (hint, words), config))
        if handler:
            _print(out, "    via %s" % (handler,))


def _check_ping_options(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise _Usage("--count=%d: expected a whole number of calls, at least 1" % (args.count,))
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise _Usage("--timeout=%g: expected a number of seconds more than 0 and at most %d (Foolscap's own "
                     "limit for a connection)" % (args.timeout, MAX_TIMEOUT))
    if not (math.isfinite(args.interval) and args.interval >= 0):
        raise _Usage("--interval=%g: expected a number of seconds, 0 or more" % (args.interval,))


async def _ping(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from foolscap.referenceable import SturdyRef

    try:
        sturdy = SturdyRef(args.furl)
    except Exception as e:
        raise _Usage("%r is not a FURL (%s); expected pb://TUBID@HINTS/NAME" % (args.furl, e)) from None
    _check_ping_options(args)
    if args.config:
        node = _load(args.config)
        source = "handlers from %r" % (node.source,)
    else:
        # Only dials: an empty file would be a listening node, reading
        # ./client.port and looking up this machine's addresses.
        node = _config.from_string(_DIALING_ONLY, source="(defaults)")
        source = "default handlers"
    tub = await _config.create_tub(node, reactor, listen=False)
    try:
        return await _ping_with(reactor, tub, sturdy, args, out, err, source, node)
    finally:
        await tub.stopService()


def _not_ping_service(method: str, e: _RemoteError) -> Optional[str]:
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
    config = _config_of(args)
    _print(out, "pinging Tub %s at %d hint%s (%s)"
           % (sturdy.tubID, len(hints), "" if len(hints) == 1 else "s", source))
    started = time.monotonic()
    connecting = _locally(tub.getReference(sturdy))
    info = tub.getConnectionInfoForFURL(args.furl)
    watch = _HintWatch(reactor, info)
    progress = _Progress(reactor, err, poll=watch.under_way)
    connecting.addTimeout(args.timeout, reactor)
    watch.start()
    progress.start()
    try:
        rref = await connecting
    except _RemoteError as e:
        _report_hints(out, info, hints, node, config=config)
        if e.check(KeyError) and "unable to find reference for name" in e.text:
            raise _Failed("connected to Tub %s, but it has no object with this FURL's name (swissnum): the "
                          "FURL is mistyped or out of date, or the object is no longer registered there"
                          % (sturdy.tubID,)) from None
        raise _Failed("connected to Tub %s, but it refused the reference: %s" % (sturdy.tubID, e)) from None
    except Exception as e:
        _report_hints(out, info, hints, node, watch.last, config)
        if isinstance(e, defer.TimeoutError):
            why = "no connection within %g s" % (args.timeout,)
        elif str(e) == _FOOLSCAP_TIMEOUT:
            why = "no connection within %g s (Foolscap's own limit for a connection)" % (
                TubConnector.CONNECTION_TIMEOUT,)
        else:
            why = str(e) or repr(e)
        raise _Failed("could not connect: " + why) from None
    finally:
        watch.stop()
        progress.stop()
    connected = time.monotonic() - started
    info = rref.getConnectionInfo()
    _report_hints(out, info, hints, node, config=config)
    _print(out, "connected in %.2f s through %s" % (connected, info.winningHint))
    _print(out, "this end:  %s" % (_describe_side(_side_of(rref.tracker.broker.transport)),))
    try:
        theirs = await _locally(rref.callRemote("whoami", _Caller()))
    except _RemoteError as e:
        _print(out, "other end: unknown")
        missing = _not_ping_service("whoami", e)
        if missing is not None:
            raise _Failed("connected, but the object at this FURL is not a %s ping service: %s"
                          % (PROG, missing)) from None
        raise _Failed("connected, but the 'whoami' call failed at the other end: %s" % (e,)) from None
    except Exception as e:
        _print(out, "other end: unknown")
        raise _Failed("connected, but the 'whoami' call failed: %s" % (str(e) or repr(e),)) from None
    _print(out, "other end: %s (%s)" % (_describe_side(theirs), theirs.get("software", "unknown software")))
    times = []
    for number in range(1, args.count + 1):
        sent = time.perf_counter()
        try:
            payload = b"ping %d" % (number,)
            echoed = await _locally(rref.callRemote("ping", payload))
        except _RemoteError as e:
            raise _Failed("call %d failed at the other end: %s" % (number, e)) from None
        except Exception as e:
            raise _Failed("call %d failed: %s" % (number, str(e) or repr(e))) from None
        took = (time.perf_counter() - sent) * 1000
        if echoed != payload:
            raise _Failed("call %d came back altered" % (number,))
        times.append(took)
        _print(out, "ping %d: %.2f ms" % (number, took))
        if number < args.count and args.interval > 0:
            await task.deferLater(reactor, args.interval, lambda: None)
    _print(out, "%d of %d calls answered; round trip min/avg/max = %.2f/%.2f/%.2f ms"
           % (len(times), args.count, min(times), sum(times) / len(times), max(times)))
    return EXIT_OK


# -- the command line ----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Role-based Foolscap (listener = TLS server, dialer = TLS client) from a "
        "Tahoe-LAFS-style configuration file: check it, create one, serve with it, ping a FURL.",
        epilog="Exit status: 0 success, 1 connection or start failure, 2 usage or configuration error.",
    )
    top.add_argument("--version", action="version", version=_version_line(),
                     help="show the version (and Foolscap's, Twisted's and Python's) and exit")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check", help="validate a configuration and say what it would do",
        description="Validate CONFIG (a node.cfg/tahoe.cfg, or a directory holding one) and print "
        "the handler for each hint type, the listeners and the location FURLs would announce. "
        "Nothing is started, listened on or written.",
    )
    check.add_argument("config", metavar="CONFIG",
                       help="a configuration file (node.cfg, or a Tahoe-LAFS tahoe.cfg), or a node directory "
                       "holding one")

    create = commands.add_parser(
        "create-node", help="write a configuration (and keys) for a new node",
        description="Write DIRECTORY/%s (and the keys it needs under DIRECTORY/private) the way "
        "'tahoe create-node' writes tahoe.cfg. --listen=tor makes the onion key here (no tor needed "
        "until 'serve'); --listen=i2p asks the I2P router's SAM bridge for a destination key." % (CONFIG_NAME,),
    )
    create.add_argument("directory", metavar="DIRECTORY", help="a new (or empty) directory")
    create.add_argument("--listen", default="tcp", metavar="tcp|tor|i2p|none",
                        help="how other Tubs reach this one; comma-separated for several (default: tcp)")
    create.add_argument("--hostname", help="with --listen=tcp: the name or address other machines reach "
                        "this one at (a loopback one also binds the listener to it)")
    create.add_argument("--port", help="with --listen=tcp: the server endpoint to listen on, e.g. tcp:3457 "
                        "(with --location)")
    create.add_argument("--location", help="with --listen=tcp: the hints to announce, e.g. "
                        "tcp:example.net:3457 (with --port)")
    create.add_argument("--tor-launch", action="store_true", help="launch a tor of our own when serving "
                        "(or, with --listen=none, when dialing tor: hints)")
    create.add_argument("--tor-executable", help="with --tor-launch: the tor to launch")
    create.add_argument("--tor-control-port", metavar="ENDPOINT",
                        help="a running tor's control port, e.g. tcp:127.0.0.1:9051 (default: the first "
                        "of %s that answers)" % (", ".join(TOR_CONTROL_PORTS),))
    create.add_argument("--i2p-launch", action="store_true", help="launch an i2pd of our own")
    create.add_argument("--i2p-executable", help="with --i2p-launch: the i2pd to launch")
    create.add_argument("--i2p-sam-port", metavar="ENDPOINT",
                        help="a running I2P router's SAM bridge (default: tcp:127.0.0.1:7656)")
    create.add_argument("--i2cp-options", metavar="NAME=VALUE,...",
                        help="I2CP options for the SAM sessions, e.g. inbound.length=1,outbound.length=1")
    create.add_argument("--hide-ip", action="store_true",
                        help="reveal-IP-address = false, and dial tcp: hints through tor; every listener "
                        "stays on 127.0.0.1 (with --listen=tcp: only as --port=tcp:PORT:interface=127.0.0.1 "
                        "and a --location of tor: or i2p: hints, e.g. an onion service set up in torrc)")

    serve = commands.add_parser(
        "serve", help="run a Tub with a ping/echo service until interrupted",
        usage="%(prog)s [-h] CONFIG [-v] [--log-file PATH]",
        description="Start the Tub CONFIG describes, register a small ping/echo service, print its "
        "FURL and serve until Ctrl-C (or SIGTERM). Slow steps (launching tor, bootstrap, publishing "
        "the onion service, opening the SAM session) are reported as they happen. The FURL is kept in "
        "DIR/%s, so it stays the same across runs." % (PING_FURL_FILE,),
    )
    serve.add_argument("config", metavar="CONFIG",
                       help="a configuration file, or a node directory holding one (as made by create-node)")
    _logging_options(serve)

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
    _logging_options(ping)
    return top


def _logging_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("-v", "--verbose", action="store_true",
                         help="log in detail, Foolscap's own log included (to stderr, or to --log-file)")
    command.add_argument("--log-file", metavar="PATH",
                         help="append Twisted's log (warnings, errors and what the reactor does; with -v, "
                         "Foolscap's connection log too) to PATH")


def _version_line() -> str:
    import platform

    import foolscap
    import twisted

    return "%s %s (Foolscap %s, Twisted %s, Python %s)" % (
        PROG, __version__, foolscap.__version__, twisted.__version__, platform.python_version())


def _start_logging(args: argparse.Namespace, err: TextIO) -> None:
    """
    Send Twisted's log where -v/--log-file say (nowhere without them), and
    with -v bridge Foolscap's own log into it: Foolscap keeps its log to
    itself otherwise, and that log is where each hint's attempt is told.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    if not (args.verbose or args.log_file):
        return
    target: TextIO
    if args.log_file:
        try:
            target = open(args.log_file, "a", encoding="utf-8")
        except OSError as e:
            raise _Usage("--log-file=%s: cannot open it for appending (%s); expected the path of a file in "
                         "an existing, writable directory" % (args.log_file, e.strerror or e)) from None
    else:
        target = err
    level = LogLevel.debug if args.verbose else LogLevel.info
    observer = FilteringLogObserver(textFileLogObserver(target),
                                    [LogLevelFilterPredicate(defaultLogLevel=level)])
    # stdout and stderr stay the command's own: its report and its errors.
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    if args.verbose:
        from foolscap.logging import log as flog

        flog.bridgeLogsToTwisted(filter=lambda event: event["level"] >= flog.OPERATIONAL)


_COMMANDS = {"check": _check, "create-node": _create_node, "serve": _serve, "ping": _ping}


async def run(reactor: Any, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run one command; its exit status.  Usage errors raise SystemExit(2) from argparse."""
    args = parser().parse_args(list(argv))
    try:
        if args.command in ("serve", "ping"):
            _start_logging(args, err)
        return int(await _COMMANDS[args.command](reactor, args, out, err))
    except _Usage as e:
        _print(err, "%s %s: error: %s" % (PROG, args.command, _cli_words(str(e), _config_of(args))))
        return EXIT_USAGE
    except _Failed as e:
        _print(err, "%s %s: %s" % (PROG, args.command, _cli_words(str(e), _config_of(args))))
        return EXIT_FAILED


def main(argv: Optional[Sequence[str]] = None, *, reactor: Optional[IReactorCore] = None) -> NoReturn:
    """
    The console script: C{foolscap-sidetls COMMAND ...}; exits with the
    command's status.

    @param reactor: the reactor to run instead of the global one, so that
        tests run the real entry point on an in-memory reactor.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser().parse_args(arguments)  # usage errors and --help before the reactor starts

    async def entry(reactor: Any) -> None:
        # Start once the reactor runs: only then has it installed its
        # SIGINT/SIGTERM handlers, so a Ctrl-C right after serve prints its
        # FURL stops the Tub cleanly instead of raising KeyboardInterrupt.
        running: Deferred = Deferred()
        reactor.callWhenRunning(running.callback, None)
        await running
        code = await run(reactor, arguments, sys.stdout, sys.stderr)
        raise SystemExit(code)

    task.react(lambda reactor: Deferred.fromCoroutine(entry(reactor)), (), reactor)
