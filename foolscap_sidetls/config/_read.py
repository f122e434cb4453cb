"""
Reading a configuration: text (or a file) into a checked L{NodeConfig},
or the first L{ConfigError} found.  The C{[node]} and C{[connections]}
sections are read here, C{[tor]} and C{[i2p]} in L{_overlays}.
"""

from __future__ import annotations

import configparser
import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from foolscap.ipb import InvalidHintError

from .. import _hints, i2p as _i2p
from .._files import read_small
from .._limits import Limits
from .._parser import parse_limits
from ._addresses import local_addresses
from ._descriptions import _ascii_digits, _endpoint_problem, _exposure, _loopback_fix, _port_zero, _tcp_port
from ._errors import ConfigError, _why
from ._model import _I2P, NodeConfig, _Listen, _Tor
from ._overlays import _read_i2p, _read_tor
from ._schema import (
    _LISTEN_I2P,
    _LISTEN_TOR,
    _PORT,
    _TOR_HINT,
    _TUB_OPTIONS,
    HANDLER_NAMES,
    PORTNUM_FILE,
    TOR_UNAVAILABLE,
    _check_sections,
    _Reader,
)

def _check_hidden_listeners(
    reader: "_Reader", entries: Sequence["_Listen"], chosen_later: bool, portnum: Optional[str]
) -> None:
    """
    With reveal-IP-address = false, every listener binds loopback only.

    Anyone holding a FURL can ask an address for its TubID: the right host
    answers C{101 Switching Protocols}, any other C{500 unknown TubID}.  A
    hidden node listening on a public interface would confirm which IP
    address runs it, whatever tub.location announces.  Tahoe-LAFS does
    not check this; here it is refused, as an onion service forwarding to
    a public interface already is.
    """
    reveals = (
        "which reveals this machine's IP address to whoever connects there (the TubID in a FURL "
        "confirms which address runs this node), but [node] reveal-IP-address = false"
    )
    also = "(only this machine can connect; a tor onion service can forward there), listen:tor or listen:i2p"
    if chosen_later:
        if portnum is None:
            raise reader.error(
                "node", "tub.port",
                "a free port chosen at the first start would listen on every interface, " + reveals,
                "tub.port = tcp:PORT:interface=127.0.0.1 " + also, None, "is not set",
            )
        where = _exposure(portnum)
        if where is not None:
            path = os.path.join(reader.basedir, PORTNUM_FILE)
            raise reader.error(
                "node", "tub.port",
                "%s holds %r (the port chosen at the first start), which listens on %s, %s"
                % (path, portnum, where, reveals),
                "tub.port = %s %s" % (_loopback_fix(portnum), also), None, "is not set",
            )
        return
    for entry in entries:
        if entry.kind != "endpoint":
            continue
        where = _exposure(entry.endpoint)
        if where is not None:
            raise reader.bad(
                "node", "tub.port",
                "%r listens on %s, %s" % (entry.text, where, reveals),
                "%s %s" % (_loopback_fix(entry.text), also),
            )


def _read_tub_port(reader: _Reader) -> tuple[bool, list[_Listen], bool]:
    """(listening, entries, chosen_later) from [node] tub.port and tub.location."""
    port = reader.get("node", "tub.port")
    location = reader.get("node", "tub.location")
    if port == "":
        raise reader.bad("node", "tub.port", "empty", "endpoint descriptions separated by commas, or disabled")
    if location == "":
        raise reader.bad("node", "tub.location", "empty", "hints separated by commas, AUTO, or disabled")
    port_off = port == "disabled"
    location_off = location == "disabled"
    if port_off and not location_off:
        raise reader.error(
            "node", "tub.location",
            "announced, but [node] tub.port = 'disabled' listens nowhere",
            "tub.location = disabled too (a Tub that only dials)", location, "is not set",
        )
    if location_off and not port_off:
        raise reader.error(
            "node", "tub.port",
            "listens, but [node] tub.location = 'disabled' announces nothing",
            "tub.port = disabled too (a Tub that only dials)", port, "is not set",
        )
    if port_off:
        return False, [], False
    if port is None:
        return True, [], True
    entries: list[_Listen] = []
    for text in port.split(","):
        text = text.strip()
        if not text:
            raise reader.bad("node", "tub.port", "has an empty entry", "endpoint descriptions separated by commas")
        written = text
        if _ascii_digits(text):
            text = "tcp:%d" % (int(text),)
        if text.startswith("listen:"):
            if text == _LISTEN_TOR:
                kind = "tor"
            elif text == _LISTEN_I2P:
                kind = "i2p"
            else:
                raise reader.bad(
                    "node", "tub.port", "%r is not a listener this module knows" % (text,),
                    "listen:tor or listen:i2p",
                )
            if any(e.kind == kind for e in entries):
                raise reader.bad("node", "tub.port", "lists %s twice" % (text,), "it once")
            entries.append(_Listen(kind, text))
            continue
        inner = text
        limits = Limits()
        if text.startswith("sidetls:"):
            try:
                inner, limits = parse_limits(text[len("sidetls:"):], server=True)
            except ValueError as e:
                raise reader.bad("node", "tub.port", str(e)) from None
        problem = _endpoint_problem(inner, server=True)
        if problem is not None:
            raise reader.bad(
                "node", "tub.port",
                "%r is not a server endpoint description (%s)" % (text, problem),
                "descriptions such as tcp:3457 or tcp:3457:interface=127.0.0.1, listen:tor, listen:i2p",
            )
        if _port_zero(inner):
            # Tahoe-LAFS refuses it too (PortAssignmentRequired): the port
            # is announced in FURLs, so it must be the same at every start.
            raise reader.bad(
                "node", "tub.port",
                "%r listens on port 0, which is not allowed: you must choose (the announced location must "
                "stay valid)" % (written,),
                "a fixed port such as tcp:3457",
            )
        entries.append(_Listen("endpoint", text, inner, limits))
    return True, entries, False


def _check_hint(reader: _Reader, hint: str) -> str:
    """The hint's type, after checking its syntax."""
    from foolscap.connections.tcp import NEW_STYLE_HINT_RE, convert_legacy_hint

    converted = convert_legacy_hint(hint)
    kind = converted.split(":", 1)[0] if ":" in converted else ""
    accepted = "hints such as tcp:example.net:3457, tor:ADDRESS.onion:3457, i2p:ADDRESS.b32.i2p, or AUTO"
    if not kind or "/" in hint or "@" in hint:
        raise reader.bad("node", "tub.location", "%r is not a connection hint" % (hint,), accepted)
    port_text: Optional[str] = None
    if kind == "tcp":
        if not NEW_STYLE_HINT_RE.search(converted):
            raise reader.bad("node", "tub.location", "%r is not a tcp:HOST:PORT hint" % (hint,), accepted)
        port_text = converted.rsplit(":", 1)[1]
    elif kind == "tor":
        found = _TOR_HINT.match(converted)
        if not found:
            raise reader.bad("node", "tub.location", "%r is not a tor:HOST:PORT hint" % (hint,), accepted)
        # What dialers would refuse (a mistyped onion) is refused here, once.
        problem = _hints.onion_problem(found.group(1))
        if problem is not None:
            raise reader.bad("node", "tub.location", "%r: %s" % (hint, problem), _hints.ONION_ACCEPTED)
        port_text = found.group(2)
    elif kind == "i2p":
        try:
            _, i2p_port = _i2p._parse_hint(converted)
        except InvalidHintError as e:
            raise reader.bad("node", "tub.location", str(e), accepted) from None
        port_text = None if i2p_port is None else str(i2p_port)
    if port_text is not None and not (_ascii_digits(port_text) and 1 <= int(port_text) <= 65535):
        raise reader.bad("node", "tub.location", "%r has port %s" % (hint, port_text), _PORT)
    return kind


def _read(
    parser: configparser.ConfigParser,
    source: str,
    basedir: str,
    addresses: Callable[[], Sequence[str]],
) -> NodeConfig:
    reader = _Reader(parser, source, basedir)
    ignored = _check_sections(reader)
    reveal_ip = reader.boolean("node", "reveal-ip-address", True)
    timeouts = {}
    for key in _TUB_OPTIONS:
        seconds = reader.seconds("node", key)
        if seconds is not None:
            timeouts[key] = seconds
    listening, entries, chosen_later = _read_tub_port(reader)

    tcp_value = reader.get("connections", "tcp")
    if tcp_value == "":
        # Tahoe-LAFS: "unknown handler type ''", not tcp.
        raise reader.bad("connections", "tcp", "empty", "one of " + ", ".join(HANDLER_NAMES))
    tcp_name = (tcp_value or "tcp").lower()
    if tcp_name not in HANDLER_NAMES:
        raise reader.bad("connections", "tcp", "unknown handler", "one of " + ", ".join(HANDLER_NAMES))

    tor = _read_tor(reader, entries, reveal_ip)
    i2p = _read_i2p(reader, entries)

    handlers: dict[str, Optional[str]] = {
        "tcp": None if tcp_name == "disabled" else tcp_name,
        "tor": "tor" if tor.enabled and tor.available else None,
        "i2p": "i2p" if i2p.enabled else None,
    }
    if tcp_name in ("tor", "i2p") and handlers[tcp_name] is None:
        raise reader.bad(
            "connections", "tcp",
            "the %s handler is not available (%s)"
            % (tcp_name, TOR_UNAVAILABLE if tcp_name == "tor" and not tor.available
               else "[%s] enabled = false" % (tcp_name,)),
            "a handler that is enabled, or disabled",
        )
    if not tor.available and tor.enabled:
        reader.warnings.append("tor: hints are not dialed: " + TOR_UNAVAILABLE)
    if tcp_name == "i2p":
        reader.warnings.append("[connections] tcp = i2p: I2P has no exits, so every tcp: hint fails as a bad hint")

    # reveal-IP-address = false vetoes anything that would reveal it.
    if not reveal_ip and tcp_name == "tcp":
        raise reader.error(
            "connections", "tcp",
            "dials tcp: hints directly, which reveals this machine's IP address, but "
            "[node] reveal-IP-address = false",
            "tor or disabled (or i2p)", tcp_value, "is not set (so tcp)",
        )

    location_value = reader.get("node", "tub.location")
    location: list[str] = []
    auto: Optional[tuple[int, tuple[str, ...]]] = None
    portnum: Optional[str] = None
    if listening:
        if chosen_later:
            portnum = _read_portnum(reader)
        hints = (location_value or "AUTO").split(",")
        for hint in [h.strip() for h in hints]:
            if not hint:
                raise reader.error(
                    "node", "tub.location", "has an empty entry", "hints separated by commas", location_value,
                )
            if hint == "AUTO":
                if not reveal_ip:
                    raise reader.error(
                        "node", "tub.location",
                        "AUTO announces this machine's IP addresses, but [node] reveal-IP-address = false",
                        "tor: or i2p: hints only", location_value, "is not set (so AUTO)",
                    )
                continue
            kind = _check_hint(reader, hint)
            if kind == "tcp" and not reveal_ip:
                raise reader.error(
                    "node", "tub.location",
                    "the hint %r reveals this machine's IP address, but [node] reveal-IP-address = false"
                    % (hint,),
                    "tor: or i2p: hints only", location_value,
                )
        if "AUTO" in [h.strip() for h in hints]:
            port_number: Optional[int] = None
            if portnum is not None:
                port_number = int(portnum.split(":")[1])
            else:
                for entry in entries:
                    tcp = _tcp_port(entry.endpoint) if entry.kind == "endpoint" else None
                    if tcp is not None:
                        port_number = tcp[0]
                        break
                if port_number is None and not chosen_later:
                    raise reader.error(
                        "node", "tub.location",
                        "AUTO announces tcp:ADDRESS:PORT, but [node] tub.port has no tcp: listener to take "
                        "the PORT from",
                        "a tcp:PORT entry in tub.port, or explicit hints", location_value, "is not set (so AUTO)",
                    )
            auto = (port_number or 0, tuple(addresses()))
        for hint in [h.strip() for h in hints]:
            if hint == "AUTO":
                assert auto is not None
                location += ["tcp:%s:%s" % (a, auto[0] or "<port>") for a in auto[1]]
            else:
                location.append(hint)
        if not reveal_ip:
            _check_hidden_listeners(reader, entries, chosen_later, portnum)
        _warn_location(reader, tor, i2p, entries, location)
    return NodeConfig(
        source=source,
        basedir=basedir,
        handlers=handlers,
        listening=listening,
        tub_port=tuple(e.text for e in entries) if listening else (),
        location=tuple(location),
        reveal_ip=reveal_ip,
        warnings=tuple(reader.warnings),
        ignored=tuple(ignored),
        timeouts=timeouts,
        _listens=tuple(entries),
        _portnum=portnum,
        _auto=auto,
        _tor=tor,
        _i2p=i2p,
    )


def _read_portnum(reader: _Reader) -> Optional[str]:
    path = os.path.join(reader.basedir, PORTNUM_FILE)
    try:
        text = read_small(path)
    except (OSError, UnicodeDecodeError) as e:
        raise reader.error("node", "tub.port", "is not set, and %s cannot be read (%s)" % (path, _why(e))) from None
    if text is None:
        return None
    if _ascii_digits(text):
        text = "tcp:%d" % (int(text),)
    tcp = _tcp_port(text)
    if tcp is None or not 1 <= tcp[0] <= 65535:
        raise reader.error(
            "node", "tub.port",
            "is not set, and %s (where the port chosen at the first start is kept) holds %r" % (path, text),
            "tcp:PORT there, or tub.port set",
        )
    return text


def _warn_location(reader: _Reader, tor: _Tor, i2p: _I2P, entries: list[_Listen], location: list[str]) -> None:
    """Warn when tub.location does not announce what this Tub publishes."""
    if tor.onion is not None and tor.onion.hint not in location:
        others = [h for h in location if h.startswith("tor:")]
        reader.warnings.append(
            "[tor] onion.private_key_file publishes %s, but [node] tub.location %s; dialers will not "
            "find this onion service"
            % (tor.onion.hint, "announces %s" % (", ".join(others),) if others else "has no tor: hint for it")
        )
    if i2p.dest is not None and any(e.kind == "i2p" for e in entries):
        wanted = (i2p.dest.hint, "i2p:" + i2p.dest.address)
        if not any(h in wanted for h in location):
            others = [h for h in location if h.startswith("i2p:")]
            reader.warnings.append(
                "[i2p] dest.private_key_file listens on %s, but [node] tub.location %s; dialers will not "
                "find this destination"
                % (i2p.dest.hint, "announces %s" % (", ".join(others),) if others else "has no i2p: hint for it")
            )


def _parser() -> configparser.ConfigParser:
    # As Tahoe-LAFS reads tahoe.cfg: a later duplicate wins, and values are
    # taken literally (no %-interpolation, no inline comments).
    return configparser.ConfigParser(interpolation=None, strict=False)


def _parse(text: str, source: str) -> configparser.ConfigParser:
    parser = _parser()
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            source, None, None, None,
            "line %d (%r) comes before any [section] header; expected [node], [connections], [tor] "
            "or [i2p] first" % (e.lineno, e.line.strip()),
        ) from None
    except configparser.ParsingError as e:
        lineno = e.errors[0][0] if e.errors else 0
        lines = text.splitlines()
        line = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        raise ConfigError(
            source, None, None, None,
            "line %d (%r) is neither 'key = value' nor a [section] header" % (lineno, line),
        ) from None
    except configparser.Error as e:
        raise ConfigError(source, None, None, None, _why(e)) from None
    return parser


def from_string(
    text: str,
    *,
    source: str = "<string>",
    basedir: Optional[str] = None,
    local_addresses: Callable[[], Sequence[str]] = local_addresses,
) -> NodeConfig:
    """
    Check a configuration given as text.

    @param source: its name in error messages.
    @param basedir: where relative paths (key files, executables) start;
        default: the current directory.
    @param local_addresses: what C{tub.location = AUTO} expands to (a
        function, so tests can give fixed addresses).
    @raise ConfigError: the first problem found.
    """
    return _read(_parse(text, source), source, _basedir(basedir), local_addresses)


def from_sections(
    sections: Mapping[str, Mapping[str, str]],
    *,
    source: str = "<sections>",
    basedir: Optional[str] = None,
    local_addresses: Callable[[], Sequence[str]] = local_addresses,
) -> NodeConfig:
    """
    Check a configuration given as C{{section: {key: value}}}, as
    L{from_string} checks the file those sections would be written as
    (same result, same errors), for a program that has the settings in
    hand (C{create-node} checking its options) and would otherwise render
    text only to have it parsed again.

    Keys are case-insensitive, as in a file; values are the text after
    C{=}, so C{"3457"}, not C{3457}.

    @param source: its name in error messages.
    @param basedir: where relative paths (key files, executables) start;
        default: the current directory.
    @param local_addresses: what C{tub.location = AUTO} expands to.
    @raise TypeError: C{sections} is not a mapping of section names to
        mappings of keys to values, all of them strings.
    @raise ConfigError: the first problem found.
    """
    _check_types(sections)
    parser = _parser()
    parser.read_dict(sections, source=source)
    return _read(parser, source, _basedir(basedir), local_addresses)


def _check_types(sections: Any) -> None:
    """
    Refuse what C{configparser.read_dict} would silently turn into text
    (C{str(3457)}, C{str(None)}): a file can only hold strings, and a
    number here is a caller's mistake that the file's checks, made on its
    text, would not name.
    """
    accepted = "from_sections() takes {section: {key: value}} with every name, key and value a string"
    if not isinstance(sections, Mapping):
        raise TypeError("%s, got %r (%s)" % (accepted, sections, type(sections).__name__))
    for name, entries in sections.items():
        if not isinstance(name, str):
            raise TypeError("%s; the section name %r is a %s" % (accepted, name, type(name).__name__))
        if not isinstance(entries, Mapping):
            raise TypeError(
                "%s; [%s] is %r (%s), not a mapping of keys to values"
                % (accepted, name, entries, type(entries).__name__)
            )
        for key, value in entries.items():
            if not isinstance(key, str):
                raise TypeError("%s; [%s] has the key %r, a %s" % (accepted, name, key, type(key).__name__))
            if not isinstance(value, str):
                fix = "leave the key out" if value is None else "write it as a file would hold it, %r" % (str(value),)
                raise TypeError(
                    "%s; [%s] %s = %r is a %s (%s)" % (accepted, name, key, value, type(value).__name__, fix)
                )


def _basedir(basedir: Optional[str]) -> str:
    return os.path.abspath(basedir if basedir is not None else os.getcwd())


def load(
    path: Union[str, "os.PathLike[str]"],
    *,
    local_addresses: Callable[[], Sequence[str]] = local_addresses,
) -> NodeConfig:
    """
    Read and check the configuration file at C{path}; relative paths in
    it start at its directory.

    @raise ConfigError: unreadable, or the first problem found.
    """
    source = os.fspath(path)
    try:
        with open(source, "r", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(source, None, None, None, "cannot read it (%s)" % (e.strerror or _why(e),)) from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, None, None, None, "cannot read it (not UTF-8: %s)" % (_why(e),)) from None
    basedir = os.path.dirname(os.path.abspath(source))
    return _read(_parse(text, source), source, basedir, local_addresses)
