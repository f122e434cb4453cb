"""
C{foolscap-sidetls create-node}: write a configuration (and the keys it
needs) for a new node, the way C{tahoe create-node} writes tahoe.cfg.

Every option is checked by the config module's own reader, on the piece
of the file it becomes, before anything is made or any daemon is asked;
the file is then written with C{configparser} and loaded again as
C{serve} will load it.
"""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any, Mapping, Optional, TextIO

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, Protocol

from foolscap.util import allocate_tcp_port

from .. import _onion, config as _config
from .._files import write_private
from ._errors import EXIT_OK, Failed, Usage
from ._nodefile import CONFIG_NAME, DIALING_ONLY, Entries, render
from ._output import PROG, say

#: Tahoe-LAFS's default onion and I2P ports.
DEFAULT_EXTERNAL_PORT = 3457
#: Where create-node looks for a running tor's control port, as Tahoe-LAFS does.
TOR_CONTROL_PORTS = ("unix:/var/run/tor/control", "tcp:127.0.0.1:9051", "tcp:127.0.0.1:9151")
#: How long a control port may take to accept a connection before the
#: next one is tried.
REACH_TIMEOUT = 2.0
#: The config keys create-node's options become, as messages name them.
_OPTION_OF_KEY = {
    "[tor] tor.executable": "--tor-executable",
    "[i2p] i2p.executable": "--i2p-executable",
    "[node] reveal-IP-address = false": "--hide-ip (reveal-IP-address = false)",
}
_LISTENERS = ("tcp", "tor", "i2p", "none")


def add_to(commands: Any) -> None:
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


# -- finding a running tor ----------------------------------------------------------------


def reachable(reactor: Any, description: str, timeout: float = REACH_TIMEOUT) -> "Deferred[bool]":
    """
    Whether something accepts connections at a client endpoint within
    C{timeout} seconds; the connection is closed at once.  Through the
    reactor, so a control port that never answers holds up nothing else.
    """

    def connected(protocol: Protocol) -> bool:
        assert protocol.transport is not None
        protocol.transport.loseConnection()
        return True

    def refused(failure: Any) -> bool:
        failure.trap(error.ConnectError)
        return False

    d = clientFromString(reactor, description).connect(Factory.forProtocol(Protocol))
    d.addCallbacks(connected, refused)
    # Cancelling a connection attempt fails it with ConnectingCancelledError
    # (not CancelledError): say what the timeout means here directly.
    return d.addTimeout(timeout, reactor, onTimeoutCancel=lambda result, timeout: False)


async def find_tor_control(reactor: Any) -> Optional[str]:
    """The first of L{TOR_CONTROL_PORTS} that accepts a connection, if one does."""
    for candidate in TOR_CONTROL_PORTS:
        if await reachable(reactor, candidate):
            return candidate
    return None


# -- checking the options -------------------------------------------------------------------


def _check_create_options(args: argparse.Namespace) -> list[str]:
    listen = [w.strip() for w in args.listen.split(",") if w.strip()]
    for word in listen:
        if word not in _LISTENERS:
            raise Usage("--listen=%s: unknown listener %r; expected tcp, tor, i2p (comma-separated) or none"
                        % (args.listen, word))
    if not listen:
        raise Usage("--listen is empty; expected tcp, tor, i2p (comma-separated) or none")
    if "none" in listen and len(listen) > 1:
        raise Usage("--listen=none cannot be combined with other listeners")
    if "tcp" in listen:
        # With --hide-ip, only an explicit --port (on loopback, as checked
        # below) and --location (tor:/i2p: hints) make sense: an onion
        # service configured in torrc, forwarding to this machine only.
        if args.hide_ip and not args.port:
            raise Usage("--hide-ip cannot be used with --listen=tcp (a tcp: hint reveals this machine's address); "
                        "try --listen=tor")
        if args.hostname and (args.port or args.location):
            raise Usage("--hostname cannot be used with --port/--location (they say where, explicitly)")
        if bool(args.port) != bool(args.location):
            raise Usage("--port and --location go together (--port says where to listen, --location what "
                        "to announce)")
        if not args.hostname and not args.port:
            raise Usage("--listen=tcp needs --hostname=NAME (what other machines call this one), "
                        "or --port=ENDPOINT and --location=HINTS")
    elif args.hostname or args.port or args.location:
        raise Usage("--hostname, --port and --location are for --listen=tcp")
    if args.tor_launch and args.tor_control_port:
        raise Usage("use either --tor-launch or --tor-control-port, not both")
    if args.i2p_launch and args.i2p_sam_port:
        raise Usage("use either --i2p-launch or --i2p-sam-port, not both")
    # A dial-only node may bring its own tor or i2pd (or name the running
    # one) for the hints it dials; a tcp listener's tor options would be
    # unused without --hide-ip.
    dial_only = listen == ["none"]
    if _tor_options(args) and not (_uses_tor(listen, args) or dial_only):
        raise Usage("--tor-* options need --listen=tor or --hide-ip")
    if _i2p_options(args) and not ("i2p" in listen or dial_only):
        raise Usage("--i2p-* options need --listen=i2p")
    if args.tor_executable and not args.tor_launch:
        raise Usage("--tor-executable needs --tor-launch")
    if args.i2p_executable and not args.i2p_launch:
        raise Usage("--i2p-executable needs --i2p-launch")
    _check_values(args)
    return listen


def _uses_tor(listen: list[str], args: argparse.Namespace) -> bool:
    return "tor" in listen or bool(args.hide_ip)


def _tor_options(args: argparse.Namespace) -> bool:
    return bool(args.tor_launch or args.tor_control_port or args.tor_executable)


def _i2p_options(args: argparse.Namespace) -> bool:
    return bool(args.i2p_launch or args.i2p_sam_port or args.i2p_executable or args.i2cp_options)


def _absolute(path: Optional[str]) -> Optional[str]:
    """
    An executable as written to the file: a path made absolute (the file
    resolves relative ones from the node directory, the user meant the
    current one), a bare name left to the PATH search.
    """
    if path is None or os.sep not in path:
        return path
    return os.path.abspath(path)


def _launch_entries(daemon: str, launch: bool, executable: Optional[str]) -> list[tuple[str, str]]:
    """The [tor] or [i2p] keys that launch a daemon of the node's own (none if it does not)."""
    if not launch:
        return []
    entries = [("launch", "true")]
    if executable:
        entries.append(("%s.executable" % (daemon,), str(_absolute(executable))))
    return entries


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
            raise Usage("%s=%r: has a line break; expected a value on one line" % (option, value))
    if args.hostname:
        _check_hostname(args.hostname)
    if args.port:
        # As the file will say it: with --hide-ip, the listener must stay on
        # loopback and the location announce no tcp: hint.
        node = [("tub.port", args.port), ("tub.location", args.location)]
        piece: dict[str, Entries] = {"node": node}
        if args.hide_ip:
            node.append(("reveal-IP-address", "false"))
            piece["connections"] = [("tcp", "tor")]
        _as_config("--port=" + args.port, piece, only="tub.port")
        _as_config("--location=" + args.location, piece)
    for daemon, launch, executable in (("tor", args.tor_launch, args.tor_executable),
                                       ("i2p", args.i2p_launch, args.i2p_executable)):
        if launch:
            shown = "--%s-executable=%s" % (daemon, executable) if executable else "--%s-launch" % (daemon,)
            _as_config(shown, {**DIALING_ONLY, daemon: _launch_entries(daemon, launch, executable)})
    for option, value, section, key in (("--tor-control-port", args.tor_control_port, "tor", "control.port"),
                                        ("--i2p-sam-port", args.i2p_sam_port, "i2p", "sam.port"),
                                        ("--i2cp-options", args.i2cp_options, "i2p", "i2cp.options")):
        if value:
            _as_config("%s=%s" % (option, value), {**DIALING_ONLY, section: [(key, value)]})


def _check_hostname(hostname: str) -> None:
    if ":" in hostname:
        raise Usage(
            "--hostname=%s: an IPv6 address, but create-node listens on IPv4 (tcp:PORT); expected a DNS "
            "name or an IPv4 address, or --port=tcp6:PORT with --location=tcp:[ADDRESS]:PORT" % (hostname,)
        )
    try:
        _read({"node": [("tub.port", "tcp:1"), ("tub.location", "tcp:%s:1" % (hostname,))]})
    except _config.ConfigError:
        raise Usage(
            "--hostname=%s: not a name a tcp: hint can carry; expected a DNS name (letters, digits, '-' "
            "and '.') or an IPv4 address" % (hostname,)
        ) from None


def _read(sections: Mapping[str, Entries]) -> _config.NodeConfig:
    """
    A piece of the file create-node would write, checked by the reader's
    own rules (L{config.from_sections}, the same checks and errors as the
    file's) without rendering text only to parse it again.
    """
    return _config.from_sections(_as_sections(sections), source=PROG, local_addresses=lambda: ["127.0.0.1"])


def _as_sections(sections: Mapping[str, Entries]) -> dict[str, dict[str, str]]:
    """C{sections} as L{config.from_sections} takes them; an empty one left out, as the file leaves it."""
    return {name: dict(entries) for name, entries in sections.items() if entries}


def _as_config(shown: str, sections: Mapping[str, Entries], only: Optional[str] = None) -> None:
    """
    A usage error for option C{shown} if the reader refuses C{sections}
    (only for problems with key C{only}, if given).
    """
    try:
        _read(sections)
    except _config.ConfigError as e:
        if only is not None and e.key != only:
            return
        problem = e.problem
        for key, option in _OPTION_OF_KEY.items():
            problem = problem.replace(key, option)
        raise Usage("%s: %s" % (shown, problem)) from None


# -- making the node ------------------------------------------------------------------------


def _i2p_handler(reactor: Any, args: argparse.Namespace, basedir: str) -> Any:
    """The I2P handler create-node asks for a destination key: the one serve will use."""
    from .. import i2p

    if args.i2p_launch:
        return i2p.launch(
            _absolute(args.i2p_executable), os.path.join(basedir, _config.I2P_STATEDIR), reactor=reactor
        )
    if args.i2p_sam_port:
        return i2p.sam_endpoint(clientFromString(reactor, args.i2p_sam_port), reactor=reactor)
    return i2p.default(reactor)


async def _make_i2p_key(reactor: Any, args: argparse.Namespace, basedir: str, keyfile: str, out: TextIO) -> str:
    """Have the SAM bridge make a destination key, as Tahoe-LAFS does; its .b32.i2p address."""
    from .. import i2p

    handler = _i2p_handler(reactor, args, basedir)
    say(out, "connecting to the I2P router's SAM bridge at %s (to make the destination key)..."
        % (handler.sam_where,))
    try:
        key = await handler.new_destination_key()
    except i2p.I2PError as e:
        raise Failed("could not make an I2P destination key: %s" % (e,)) from None
    finally:
        await handler.stop()
    write_private(keyfile, key)
    return i2p.address_of(keyfile)


async def run(reactor: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    listen = _check_create_options(args)
    basedir = os.path.abspath(args.directory)
    if os.path.exists(basedir) and (not os.path.isdir(basedir) or os.listdir(basedir)):
        raise Usage("%s exists and is not an empty directory; to avoid clobbering anything, "
                    "create-node wants a new one" % (basedir,))
    path = os.path.join(basedir, CONFIG_NAME)
    tor_control = args.tor_control_port
    if "tor" in listen and not args.tor_launch and not tor_control:
        tor_control = await find_tor_control(reactor)
        if tor_control is None:
            raise Failed("no tor control port answered at %s; pass --tor-control-port=ENDPOINT "
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


def _is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.")


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
        sections["tor"] += _launch_entries("tor", args.tor_launch, args.tor_executable)
        if not args.tor_launch and tor_control:
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
        say(out, "made the onion service key: %s" % (onion,))
    if "i2p" in listen:
        keyfile = os.path.join("private", "i2p_dest.privkey")
        address = await _make_i2p_key(reactor, args, basedir, os.path.join(basedir, keyfile), out)
        say(out, "made the I2P destination key: %s" % (address,))
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

    comments = [
        "-*- mode: conf; coding: utf-8 -*-",
        "Written by '%s create-node'.  The keys mean what they mean in" % (PROG,),
        "Tahoe-LAFS's tahoe.cfg; check this file with '%s check %s'." % (PROG, path),
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(sections, comments, {"node": ("timeout.keepalive", "timeout.disconnect")}))
    # What was written must load: the same check 'serve' will do.  The
    # options were checked one by one; what they make together is checked
    # here, and refusing it removes everything (see run).
    try:
        _config.load(path)
    except _config.ConfigError as e:
        raise Usage("these options make a configuration 'check' refuses: %s" % (e,)) from None
    say(out, "created %s" % (path,))
    say(out, "  tub.port = %s" % (",".join(ports),))
    say(out, "  tub.location = %s" % (",".join(hints),))
    if listen == ["none"]:
        say(out, "this node only dials, so there is nothing to serve; reach a FURL with its handlers: "
            "%s ping --config %s FURL" % (PROG, path))
    else:
        say(out, "serve it with: %s serve %s" % (PROG, path))
    return EXIT_OK


def _i2p_entries(args: argparse.Namespace, default_sam: Optional[str] = None) -> list[tuple[str, str]]:
    """The [i2p] keys that say how this node reaches I2P (which SAM bridge, with which options)."""
    entries = _launch_entries("i2p", args.i2p_launch, args.i2p_executable)
    if not args.i2p_launch:
        sam = args.i2p_sam_port or default_sam
        if sam:
            entries.append(("sam.port", sam))
    if args.i2cp_options:
        entries.append(("i2cp.options", args.i2cp_options))
    return entries
