"""
The C{[tor]} and C{[i2p]} sections, read into the plans L{create_tub}
follows: which daemon to reach or launch, and the onion service or I2P
destination to publish, with their key files read (and their addresses
known) before anything starts.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Sequence

from twisted.internet.testing import MemoryReactor

from .. import _onion, i2p as _i2p
from ._descriptions import _ascii_digits, _tcp_port
from ._errors import _why
from ._model import _I2P, _Dest, _Listen, _Onion, _Tor
from ._schema import _I2P_OPTION_KEY, _I2P_OPTION_VALUE, _I2P_RESERVED, _PORT, _Reader

def _tor_or_none() -> Any:
    """
    L{foolscap_sidetls.tor}, or L{None} without txtorcon.  txtorcon itself
    is imported each time, not only the module once: a module imported
    earlier in the process does not prove txtorcon is still importable.
    """
    try:
        import txtorcon  # noqa: F401

        from .. import tor
    except ImportError:
        return None
    return tor


def _read_tor(reader: _Reader, entries: list[_Listen], reveal_ip: bool) -> _Tor:
    section = "tor"
    enabled = reader.boolean(section, "enabled", True)
    launch = reader.boolean(section, "launch", False)
    onion = reader.boolean(section, "onion", False)
    control = reader.client_endpoint(section, "control.port", "tcp:127.0.0.1:9051")
    socks = reader.client_endpoint(section, "socks.port", "tcp:127.0.0.1:9050")
    local_port = reader.port(section, "onion.local_port")
    external_port = reader.port(section, "onion.external_port")
    key_value = reader.get(section, "onion.private_key_file")
    if key_value == "":
        raise reader.bad(section, "onion.private_key_file", "empty", "the path of the onion service's key file")
    _tor_module = _tor_or_none()
    available = _tor_module is not None
    search: Sequence[str] = (
        _tor_module.TOR_SEARCH_DIRS if _tor_module is not None
        else ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
    )
    needs = []
    if launch:
        needs.append(("launch", "true"))
    if onion:
        needs.append(("onion", "true"))
    if control:
        needs.append(("control.port", control))
    if socks:
        needs.append(("socks.port", socks))
    if needs and not available:
        key, value = needs[0]
        raise reader.error(
            section, key, "needs txtorcon, which is not installed",
            "pip install 'foolscap-sidetls[tor]'", value,
        )
    executable = reader.executable(section, "tor.executable", "tor", search) if launch else None
    bootstrap_timeout = _read_bootstrap_timeout(reader, _tor_module)
    if not launch and not control and reader.get(section, "bootstrap.timeout") is not None:
        reader.warnings.append(
            "[tor] bootstrap.timeout is not used: only a launched tor ([tor] launch = true) or one "
            "at [tor] control.port tells its bootstrap progress"
        )
    if not launch and reader.get(section, "tor.executable") is not None:
        reader.warnings.append("[tor] tor.executable is not used: [tor] launch is not true")
    if launch:
        for unused, setting in (("control.port", control), ("socks.port", socks)):
            if setting:
                reader.warnings.append(
                    "[tor] %s is not used: [tor] launch = true dials and publishes through the "
                    "launched tor" % (unused,)
                )
    onion_plan: Optional[_Onion] = None
    listens_tor = [e for e in entries if e.kind == "tor"]
    if onion:
        _require(
            reader, section, "onion",
            (launch or control, "needs [tor] launch = true or [tor] control.port: only tor's control port can "
             "publish an onion service", None),
            (local_port, "needs [tor] onion.local_port",
             _PORT + ": the 127.0.0.1 port the onion service forwards to"),
            (external_port, "needs [tor] onion.external_port", _PORT + ": the onion service's port, e.g. 3457"),
            (key_value, "needs [tor] onion.private_key_file", "the path of the onion service's key file"),
        )
        assert local_port is not None and external_port is not None and key_value is not None
        key_file = reader.path(key_value)
        address = _read_onion_key(reader, key_value, key_file)
        # The onion service forwards to 127.0.0.1:local_port: tub.port must
        # listen there, as listen:tor or tcp:LOCAL:interface=127.0.0.1.
        found = False
        forward: Optional[int] = local_port
        for entry in list(entries):
            if entry.kind != "endpoint":
                continue
            tcp = _tcp_port(entry.endpoint)
            if tcp is None or tcp[0] != local_port:
                continue
            found = True
            if tcp[1] in ("127.0.0.1", "localhost"):
                entries[entries.index(entry)] = _Listen("tor", entry.text)
                continue
            # Tahoe-LAFS accepts this: its listener takes 127.0.0.1:PORT
            # too, and tor forwards there.  Here tor.listen() listens for
            # the onion itself, so it takes a free 127.0.0.1 port instead,
            # and this entry stays the Tub's listener on the other addresses.
            everywhere = tcp[1] in (None, "", "0.0.0.0", "::")
            where = "every interface" if everywhere else tcp[1]
            if not reveal_ip:
                raise reader.error(
                    "node", "tub.port",
                    "%r listens on %s, which reveals this machine's IP address to whoever connects there, "
                    "but [node] reveal-IP-address = false" % (entry.text, where),
                    "tcp:%d:interface=127.0.0.1 or listen:tor (reachable only through the onion service)"
                    % (local_port,),
                    reader.get("node", "tub.port"),
                )
            forward = None
            reader.warnings.append(
                "[node] tub.port %r listens on %s, not only on 127.0.0.1 where [tor] onion.local_port = %d "
                "points: this Tub is also reachable without tor, at %s, and the onion service forwards to a "
                "free 127.0.0.1 port of its own; tcp:%d:interface=127.0.0.1 (or listen:tor) would make it "
                "reachable only through the onion service"
                % (entry.text, where, local_port, "this machine's IP addresses" if everywhere else tcp[1],
                   local_port)
            )
        if listens_tor:
            found = True
        if not found:
            raise reader.error(
                section, "onion",
                "the onion service forwards to 127.0.0.1:%d, but [node] tub.port does not listen there"
                % (local_port,),
                "listen:tor (or tcp:%d:interface=127.0.0.1) in [node] tub.port" % (local_port,),
                "true",
            )
        onion_plan = _Onion(
            key_file=key_file, address=address, port=external_port, local_port=local_port, forward_port=forward
        )
    elif listens_tor:
        raise reader.error(
            "node", "tub.port",
            "listen:tor needs [tor] onion = true (with onion.local_port, onion.external_port and "
            "onion.private_key_file)",
            None, reader.get("node", "tub.port"),
        )
    return _Tor(enabled, launch, executable, control, socks, onion_plan, available, bootstrap_timeout)


def _read_bootstrap_timeout(reader: _Reader, tor_module: Any) -> Optional[float]:
    default = tor_module.BOOTSTRAP_TIMEOUT if tor_module is not None else 60.0
    return _read_wait(reader, "tor", "bootstrap.timeout", default, "60, or 0 (or none) to wait for tor")


def _read_wait(reader: _Reader, section: str, key: str, default: float, accepted: str) -> Optional[float]:
    """
    How long to wait for a daemon's progress before saying why it makes
    none: seconds, or None for "keep waiting" (C{0} or C{none}).
    """
    value = reader.get(section, key)
    if value is None or value == "":  # Tahoe: an empty value means "not set"
        return float(default)
    if value.lower() == "none" or value == "0":
        return None
    if not _ascii_digits(value):
        raise reader.bad(
            section, key, "not a number of seconds",
            "a whole number of seconds, e.g. %s as long as it takes" % (accepted,),
        )
    return float(int(value))


def _read_onion_key(reader: _Reader, value: str, path: str) -> str:
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise reader.error(
            "tor", "onion.private_key_file",
            "%s does not exist (%s)" % (path, reader.relative(value)),
            "a key file, as 'foolscap-sidetls create-node --listen=tor' writes", value,
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise reader.error(
            "tor", "onion.private_key_file", "cannot read %s (%s)" % (path, _why(e)), None, value,
        ) from None
    try:
        return _onion.address_of_key(text)
    except ValueError as e:
        raise reader.error(
            "tor", "onion.private_key_file",
            "%s does not hold a tor onion service key (%s)" % (path, e),
            "one line 'ED25519-V3:<base64>', as tor and Tahoe-LAFS write it", value,
        ) from None


def _read_i2p_key(reader: _Reader, value: str, path: str) -> str:
    """The .b32.i2p address of the key in C{path}."""
    accepted = "an I2P private key file, as 'foolscap-sidetls create-node --listen=i2p' writes"
    if not os.path.isfile(path):
        raise reader.error(
            "i2p", "dest.private_key_file",
            "%s does not exist (%s)" % (path, reader.relative(value)), accepted, value,
        )
    try:
        return _i2p.address_of(path)
    except ValueError:
        raise reader.error(
            "i2p", "dest.private_key_file", "%s does not hold an I2P private key" % (path,), accepted, value,
        ) from None


def _parse_i2cp(reader: _Reader) -> dict[str, str]:
    value = reader.get("i2p", "i2cp.options")
    if value is None:
        return {}
    accepted = "NAME=VALUE pairs separated by commas, e.g. inbound.length=1, outbound.length=1"
    options: dict[str, str] = {}
    for item in [p for p in re.split(r"[,\s]+", value) if p]:
        name, eq, setting = item.partition("=")
        if not eq or not name:
            raise reader.bad("i2p", "i2cp.options", "%r is not NAME=VALUE" % (item,), accepted)
        if not _I2P_OPTION_KEY.match(name):
            raise reader.bad(
                "i2p", "i2cp.options", "option name %r has characters other than letters, digits, '.', '_', '-'"
                % (name,), accepted,
            )
        if name.upper() in _I2P_RESERVED:
            raise reader.bad("i2p", "i2cp.options", "%r is set by foolscap-sidetls itself" % (name,), accepted)
        if not _I2P_OPTION_VALUE.match(setting):
            raise reader.bad("i2p", "i2cp.options", "the value of %r has a quote or '='" % (name,), accepted)
        options[name] = setting
    if not options:
        raise reader.bad("i2p", "i2cp.options", "empty", accepted)
    return options


def _read_i2p(reader: _Reader, entries: list[_Listen]) -> _I2P:
    section = "i2p"
    enabled = reader.boolean(section, "enabled", True)
    launch = reader.boolean(section, "launch", False)
    dest = reader.boolean(section, "dest", False)
    sam = reader.client_endpoint(section, "sam.port", "tcp:127.0.0.1:7656")
    dest_port = reader.port(section, "dest.port")
    key_value = reader.get(section, "dest.private_key_file")
    if key_value == "":
        raise reader.bad(section, "dest.private_key_file", "empty", "the path of the destination's key file")
    options = _parse_i2cp(reader)
    configdir_value = reader.get(section, "i2p.configdir")
    if configdir_value == "":
        raise reader.bad(section, "i2p.configdir", "empty", "the directory holding an i2pd.conf")
    if sam and launch:
        raise reader.error(
            section, "launch",
            "conflicts with [i2p] sam.port = %r: a launched i2pd has a SAM port of its own" % (sam,),
            "one of them", "true",
        )
    executable = (
        reader.executable(section, "i2p.executable", "i2pd", _i2p.I2PD_SEARCH_DIRS) if launch else None
    )
    if not launch and reader.get(section, "i2p.executable") is not None:
        reader.warnings.append("[i2p] i2p.executable is not used: [i2p] launch is not true")
    reseed_timeout = _read_wait(
        reader, section, "reseed.timeout", _i2p.RESEED_TIMEOUT, "30, or 0 (or none) to wait for i2pd's peers"
    )
    if not launch and reader.get(section, "reseed.timeout") is not None:
        reader.warnings.append(
            "[i2p] reseed.timeout is not used: only a launched i2pd ([i2p] launch = true) is watched for "
            "failing to reseed"
        )
    configdir: Optional[str] = None
    configdir_sam: Optional[str] = None
    if configdir_value is not None:
        configdir = reader.path(configdir_value)
        conf = os.path.join(configdir, "i2pd.conf")
        if launch:
            # The launched i2pd keeps its data (and the i2pd.conf launch()
            # writes) there: never overwrite the file of another i2pd.
            try:
                with open(conf, "r", encoding="utf-8", errors="replace") as f:
                    first = f.readline()
            except FileNotFoundError:
                first = None
            except OSError as e:
                raise reader.bad(section, "i2p.configdir", "cannot read %s (%s)" % (conf, _why(e))) from None
            if first is not None and not first.startswith("# written by foolscap_sidetls.i2p.launch()"):
                raise reader.bad(
                    section, "i2p.configdir",
                    "with [i2p] launch = true the launched i2pd keeps its data there, but %s belongs to "
                    "another i2pd" % (conf,),
                    "a directory of its own for the launched i2pd (or launch = false to use that i2pd)",
                )
            if os.path.exists(configdir) and not os.path.isdir(configdir):
                raise reader.bad(section, "i2p.configdir", "%s is not a directory" % (configdir,))
        elif not sam:
            try:
                made = _i2p.local_i2p(configdir, reactor=MemoryReactor())
            except (_i2p.I2PConfigError, TypeError, ValueError) as e:
                raise reader.bad(
                    section, "i2p.configdir", _why(e),
                    "the configuration directory of a running i2pd with its SAM bridge enabled",
                ) from None
            configdir_sam = made.sam_where
        else:
            reader.warnings.append("[i2p] i2p.configdir is not used: [i2p] sam.port says where SAM is")
    dest_plan: Optional[_Dest] = None
    listens_i2p = any(e.kind == "i2p" for e in entries)
    if dest:
        _require(
            reader, section, "dest",
            (sam or launch or configdir,
             "needs a SAM bridge to listen through: [i2p] sam.port, launch = true or i2p.configdir", None),
            (dest_port, "needs [i2p] dest.port", _PORT + ": the I2P port announced in the hint, e.g. 3457"),
            (key_value, "needs [i2p] dest.private_key_file", "the path of the destination's key file"),
        )
        assert dest_port is not None and key_value is not None
        key_file = reader.path(key_value)
        address = _read_i2p_key(reader, key_value, key_file)
        dest_plan = _Dest(key_file=key_file, address=address, port=dest_port)
        if not listens_i2p:
            reader.warnings.append(
                "[i2p] dest = true is not used: [node] tub.port has no listen:i2p (as in Tahoe-LAFS, "
                "the destination is listened on only through listen:i2p)"
            )
    elif listens_i2p:
        raise reader.error(
            "node", "tub.port",
            "listen:i2p needs [i2p] dest = true (with dest.port and dest.private_key_file)",
            None, reader.get("node", "tub.port"),
        )
    return _I2P(enabled, sam, launch, executable, configdir, configdir_sam, dest_plan, options, reseed_timeout)


def _require(reader: _Reader, section: str, switch: str, *needs: tuple[Any, str, Optional[str]]) -> None:
    """
    Refuse C{[section] switch = true} (C{onion}, C{dest}) at the first of
    C{needs} -- (what it needs, given or not; the problem; what is
    accepted) -- that is missing: publishing needs every piece, and the
    error names the first one missing.
    """
    for got, problem, accepted in needs:
        if not got:
            raise reader.error(section, switch, problem, accepted, "true")
