"""
The replacements for the patch points named in L{_hooks}: each factory
takes Tahoe's original and returns what takes its place.  They touch only
where Tahoe makes handlers, listeners and its key table; TLS and
Foolscap's protocol are left to the wrapped endpoints.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from .. import install, listener
from .._twisted import parse_description
from ._keys import is_added
from ._networks import I2PProvider, TorProvider, networks_for

__all__ = [
    "admit_keys",
    "create_tub",
    "i2p_create_config",
    "i2p_provider",
    "listen_on_unused",
    "tor_provider",
    "tub_listen_on",
    "validate_i2p_options",
]


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def admit_keys(original: Callable[[], Any]) -> Callable[[], Any]:
    """Tahoe's key table plus the keys of L{_keys.ADDED_KEYS}, and nothing else."""
    from allmydata.util.configutil import ValidConfiguration  # type: ignore[import-untyped]

    def _common_valid_config() -> Any:
        return original().update(ValidConfiguration({}, lambda section: False, is_added))

    return _common_valid_config


def i2p_provider(original: Callable[..., Any]) -> Callable[..., Any]:
    """The node's [i2p] served by foolscap-sidetls (Tahoe's raises NotImplementedError for launch = true)."""

    def create(reactor: Any, config: Any) -> I2PProvider:
        return I2PProvider(networks_for(reactor, config))

    return create


def tor_provider(original: Callable[..., Any]) -> Callable[..., Any]:
    """
    The node's [tor] served by foolscap-sidetls, its HTTPS storage client
    included (L{TorProvider.get_tor_instance}): Tahoe's own provider is
    never made, so it never launches or connects to a tor of its own.
    """

    def create(reactor: Any, config: Any, import_tor: Any = None, import_txtorcon: Any = None) -> TorProvider:
        return TorProvider(networks_for(reactor, config))

    return create


def create_tub(original: Callable[..., Any]) -> Callable[..., Any]:
    """Tahoe's Tub, then every handler it was given made role-based."""

    def create_tub(
        tub_options: Any,
        default_connection_handlers: Any,
        foolscap_connection_handlers: Any,
        handler_overrides: Optional[Any] = None,
        force_foolscap: bool = False,
        **kwargs: Any,
    ) -> Any:
        tub = original(
            tub_options,
            default_connection_handlers,
            foolscap_connection_handlers,
            handler_overrides=handler_overrides,
            force_foolscap=force_foolscap,
            **kwargs,
        )
        # Only now: Tahoe has removed Foolscap's defaults and added its own.
        install(tub)
        return tub

    return create_tub


def _role_based(what: Any) -> Any:
    """C{what} (an endpoint or a description) as a sidetls listener; C{sidetls:} ones are already."""
    if IStreamServerEndpoint.providedBy(what):
        return listener(what)
    text = _text(what)
    if text.startswith("sidetls:"):
        return text
    return listener(serverFromString(_reactor(), text))


def _loopback_tcp_port(description: str) -> Optional[int]:
    """The port of a C{tcp:PORT:interface=<loopback>} description, else None."""
    try:
        args, kwargs = parse_description(description)
    except ValueError:
        return None
    if len(args) != 2 or args[0] != "tcp" or not args[1].isdigit():
        return None
    if kwargs.get("interface") not in ("127.0.0.1", "::1", "localhost"):
        return None
    return int(args[1])


def tub_listen_on(original: Callable[..., Any]) -> Callable[..., Any]:
    """Every tub.port entry as a sidetls listener; listen:tor and listen:i2p published by foolscap-sidetls."""

    def tub_listen_on(i2p_provider: Any, tor_provider: Any, tub: Any, tubport: Any, location: Any) -> None:
        entries = _text(tubport).split(",")
        # [tor] onion = true, as `tahoe create-node --listen=tor` writes it:
        # tub.port = tcp:LOCAL:interface=127.0.0.1, which stock Tahoe's tor
        # provider publishes when it starts.  Here tor.listen listens on it
        # and publishes it; a tub.port holding that port on every interface
        # keeps it, and the onion forwards to a free 127.0.0.1 port instead.
        onion = tor_provider.onion_local_port() if isinstance(tor_provider, TorProvider) else None
        published = onion is None or "listen:tor" in entries
        for port in entries:
            if port in ("listen:i2p", "listen:tor"):
                provider = i2p_provider if port == "listen:i2p" else tor_provider
                if not isinstance(provider, (I2PProvider, TorProvider)):
                    raise TypeError(
                        "foolscap-sidetls tahoe: %s needs the launcher's %s provider, got %r (Tahoe made it "
                        "before the launcher patched it?)" % (port, port.split(":")[1], provider)
                    )
                provider.listen(tub)
            elif not published and _loopback_tcp_port(port) == onion:
                tor_provider.listen(tub)
                published = True
            else:
                tub.listenOn(_role_based(port))
        if not published:
            tor_provider.listen(tub, local_port=None)
        tub.setLocation(location)

    return tub_listen_on


class _ListeningRoleBased:
    """A Tub whose listenOn makes sidetls listeners; the rest is the Tub's."""

    def __init__(self, tub: Any) -> None:
        self._tub = tub

    def listenOn(self, what: Any, *args: Any, **kwargs: Any) -> Any:
        return self._tub.listenOn(_role_based(what), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tub, name)


def listen_on_unused(original: Callable[..., Any]) -> Callable[..., Any]:
    """The log-port Tub: role-based handlers, and its loopback listener a sidetls one."""

    def listenOnUnused(tub: Any, portnum: Optional[int] = None) -> int:
        install(tub)
        return original(_ListeningRoleBased(tub), portnum)

    return listenOnUnused


#: Where create-node --i2p-launch writes the destination key, and the I2P
#: port in its hint: what Tahoe's own create_config writes for a SAM port.
_I2P_KEY_FILE = os.path.join("private", "i2p_dest.privkey")
_I2P_EXTERNAL_PORT = 3457


def validate_i2p_options(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """
    Tahoe's checks of create-node's I2P options, with --i2p-launch
    accepted (Tahoe refuses it as "under development"): the launcher
    serves C{[i2p] launch = true}.
    """
    from twisted.python.usage import UsageError

    def validate(o: Any) -> None:
        launch = o["i2p-launch"]
        if not launch:
            return original(o)
        if "i2p" not in o["listen"].split(","):
            raise UsageError("--i2p-launch requires --listen=i2p")
        if o["i2p-sam-port"]:
            raise UsageError("use either --i2p-launch or --i2p-sam-port=, not both")
        # Tahoe's remaining checks (txi2p installed), without its refusal.
        o["i2p-launch"] = False
        try:
            original(o)
        finally:
            o["i2p-launch"] = launch

    return validate


def i2p_create_config(original: Callable[..., Any]) -> Callable[..., Any]:
    """
    create-node's [i2p] section: with --i2p-launch, an i2pd launched by
    L{foolscap_sidetls.i2p.launch} in the node's own i2pd directory (the
    one C{run} will launch it in) makes the destination key through SAM,
    and is stopped; the section says C{launch = true}.  Otherwise Tahoe's
    own (SAM at --i2p-sam-port, or 127.0.0.1:7656).
    """

    async def create_config(reactor: Any, cli_config: Any) -> Any:
        if not cli_config["i2p-launch"]:
            return await original(reactor, cli_config)
        return await _launched_i2p_config(reactor, cli_config)

    return create_config


async def _launched_i2p_config(reactor: Any, cli_config: Any) -> Any:
    from allmydata.listeners import ListenerConfig  # type: ignore[import-untyped]

    from .. import i2p
    from .._files import write_private
    from ..config import I2P_STATEDIR

    basedir = os.path.abspath(cli_config["basedir"])
    stdout = getattr(cli_config, "stdout", sys.stdout)
    stderr = getattr(cli_config, "stderr", sys.stderr)
    executable = cli_config["i2p-executable"]
    if executable:
        executable = os.path.abspath(os.path.expanduser(executable))
    try:
        handler = i2p.launch(executable, os.path.join(basedir, I2P_STATEDIR), reactor=reactor)
        print("launching i2pd (to allocate .i2p address)..", file=stdout)
        try:
            key = await handler.new_destination_key()
        finally:
            await handler.stop()
    except i2p.I2PError as e:
        # One line, not a traceback: what failed and why (i2pd not found,
        # exited, its SAM bridge silent).
        print("foolscap-sidetls tahoe: could not make the I2P destination key with a launched i2pd: %s" % (e,),
              file=stderr)
        raise SystemExit(1) from None
    keyfile = os.path.join(basedir, _I2P_KEY_FILE)
    write_private(keyfile, key)
    address = i2p.address_of(keyfile)
    print(".i2p address allocated (i2pd stopped; `run` launches it again)", file=stdout)
    entries = [("launch", "true")]
    if executable:
        entries.append(("i2p.executable", executable))
    entries += [
        ("dest", "true"),
        ("dest.port", str(_I2P_EXTERNAL_PORT)),
        ("dest.private_key_file", _I2P_KEY_FILE),
    ]
    return ListenerConfig(["listen:i2p"], ["i2p:%s:%d" % (address, _I2P_EXTERNAL_PORT)], {"i2p": entries})
