"""
The replacements for the patch points named in L{_hooks}: each factory
takes Tahoe's original and returns what takes its place.  They touch only
where Tahoe makes handlers, listeners and its key table; TLS and
Foolscap's protocol are left to the wrapped endpoints.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from .. import install, listener
from ._keys import is_added
from ._networks import I2PProvider, TorProvider, networks_for

__all__ = ["admit_keys", "create_tub", "i2p_provider", "listen_on_unused", "tor_provider", "tub_listen_on"]


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
    """The node's [tor] served by foolscap-sidetls; Tahoe's own is kept for its HTTPS storage client."""

    def create(reactor: Any, config: Any, import_tor: Any = None, import_txtorcon: Any = None) -> TorProvider:
        networks = networks_for(reactor, config)
        networks.tahoe_tor_factory = lambda: original(reactor, config, import_tor, import_txtorcon)
        return TorProvider(networks)

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


def tub_listen_on(original: Callable[..., Any]) -> Callable[..., Any]:
    """Every tub.port entry as a sidetls listener; listen:tor and listen:i2p published by foolscap-sidetls."""

    def tub_listen_on(i2p_provider: Any, tor_provider: Any, tub: Any, tubport: Any, location: Any) -> None:
        for port in _text(tubport).split(","):
            if port in ("listen:i2p", "listen:tor"):
                provider = i2p_provider if port == "listen:i2p" else tor_provider
                if not isinstance(provider, (I2PProvider, TorProvider)):
                    raise TypeError(
                        "foolscap-sidetls tahoe: %s needs the launcher's %s provider, got %r (Tahoe made it "
                        "before the launcher patched it?)" % (port, port.split(":")[1], provider)
                    )
                provider.listen(tub)
            else:
                tub.listenOn(_role_based(port))
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
