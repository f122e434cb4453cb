"""
The C{i2p:} endpoint descriptions of txi2p's string parser, built on this
package's SAM client: what C{sidetls:i2p:...} means (see
L{foolscap_sidetls._parser}).  txi2p is never imported, so parsing one costs
no Parsley grammar (see L{foolscap_sidetls.i2p.sam} for the figures).

The same syntax as txi2p's SAM descriptions, so a Tahoe-style
C{tub.port = sidetls:i2p:...} written for txi2p keeps working::

    i2p:KEYFILE[:PORT]:api=SAM:apiEndpoint=tcp\\:127.0.0.1\\:7656[:nickname=N][:options=K\\:V,K\\:V]
    i2p:HOST[:PORT][:api=SAM:apiEndpoint=...][:nickname=N][:options=...]

C{api} and C{apiEndpoint} may be left out (SAM at 127.0.0.1:7656, as
txi2p).  A server's key file is made through SAM (0600, atomically) if it
does not exist.  A client description makes one dialing session, opened on
its first connection and shared by its later ones.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from zope.interface import implementer
from foolscap.ipb import InvalidHintError
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

from ._handler import sam_endpoint
from ._keys import claim, read_key
from ._listen import keyed_session
from ._local import DEFAULT_SAM_HOST, DEFAULT_SAM_PORT
from .sam import SIGNATURE_TYPE, SAMBridge, SAMListeningPort, b32, check_nickname, check_options
from .sam._util import where

#: The options of txi2p's SAM descriptions this form takes (C{autoClose},
#: C{keyfile} and C{localPort} are refused rather than ignored).
_OPTIONS = ("api", "apiEndpoint", "nickname", "options", "sigType")


def _options(kwargs: dict[str, str], accepted: Sequence[str], what: str) -> dict[str, str]:
    """txi2p's options, checked: SAM only, our signature type, no option we would ignore."""
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            "%s: option %s is not supported; the options are %s"
            % (what, ", ".join(repr(name) for name in unknown), ", ".join(accepted))
        )
    api = kwargs.get("api", "SAM")
    if api != "SAM":
        raise ValueError("%s: api=%r is not supported; only api=SAM (I2P's SAM bridge)" % (what, api))
    signature = kwargs.get("sigType", SIGNATURE_TYPE)
    if signature != SIGNATURE_TYPE:
        raise ValueError("%s: sigType=%r is not supported; new keys are %s" % (what, signature, SIGNATURE_TYPE))
    pairs: dict[str, str] = {}
    for item in filter(None, kwargs.get("options", "").split(",")):
        name, colon, value = item.partition(":")
        if not colon:
            raise ValueError(
                "%s: options=%r: %r is not NAME:VALUE (e.g. options=inbound.length\\:1,outbound.length\\:1)"
                % (what, kwargs["options"], item)
            )
        pairs[name] = value
    return check_options(pairs, what)


def _api_endpoint(reactor: Any, kwargs: dict[str, str]) -> IStreamClientEndpoint:
    """The SAM bridge's client endpoint: C{apiEndpoint}, or txi2p's default."""
    return clientFromString(reactor, kwargs.get("apiEndpoint", "tcp:%s:%d" % (DEFAULT_SAM_HOST, DEFAULT_SAM_PORT)))


def _port(text: Optional[str], what: str) -> Optional[int]:
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError("%s: port %r is not a number from 1 to 65535" % (what, text))
    return int(text)


@implementer(IStreamServerEndpoint)
class _KeyFileServerEndpoint:
    """Listens on the destination whose private key is in a file (made if missing)."""

    def __init__(
        self, bridge: SAMBridge, keyfile: str, port: Optional[int], nickname: Optional[str], options: dict[str, str]
    ) -> None:
        self._bridge = bridge
        self._keyfile = keyfile
        self._port = port
        self._nickname = nickname
        self._options = options

    def __repr__(self) -> str:
        return "<I2P server endpoint for %s via SAM at %s>" % (self._keyfile, self._bridge.where)

    def listen(self, protocolFactory: IProtocolFactory) -> "Deferred[IListeningPort]":
        return Deferred.fromCoroutine(self._listen(protocolFactory))

    async def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        what = "sidetls:i2p:%s" % (self._keyfile,)
        key = read_key(self._keyfile)
        release = claim(self._bridge.where, b32(key), what) if key is not None else None
        session = await keyed_session(self._bridge, self._keyfile, key, release, self._nickname, self._options,
                                      lambda status: None, what)
        try:
            await session.ready()
            return await SAMListeningPort(session, factory, self._port).start()
        except BaseException:
            session.close()
            raise


def _checked(args: Sequence[str], kwargs: dict[str, str], what: str, first: str) -> tuple[dict[str, str], Optional[str]]:
    """The positional fields counted, then the session options and nickname, checked."""
    if not 1 <= len(args) <= 2 or not args[0]:
        raise ValueError(
            "%s expects 'sidetls:i2p:%s[:PORT]:api=SAM:apiEndpoint=tcp\\:127.0.0.1\\:7656', got %d "
            "positional fields" % (what, first, len(args))
        )
    options = _options(kwargs, _OPTIONS, what)
    nickname = kwargs.get("nickname")
    check_nickname(nickname, what)
    return options, nickname


def server(reactor: Any, args: Sequence[str], kwargs: dict[str, str]) -> IStreamServerEndpoint:
    """The endpoint of C{i2p:KEYFILE[:PORT]:...} (C{args} after C{"i2p"})."""
    what = "sidetls:i2p: (server)"
    options, nickname = _checked(args, kwargs, what, "KEYFILE")
    endpoint = _api_endpoint(reactor, kwargs)
    bridge = SAMBridge(endpoint, where(endpoint), reactor)
    return _KeyFileServerEndpoint(bridge, args[0], _port(args[1] if len(args) > 1 else None, what), nickname, options)


def client(reactor: Any, args: Sequence[str], kwargs: dict[str, str]) -> IStreamClientEndpoint:
    """The endpoint of C{i2p:HOST[:PORT]:...} (C{args} after C{"i2p"})."""
    what = "sidetls:i2p: (client)"
    options, nickname = _checked(args, kwargs, what, "HOST")
    handler = sam_endpoint(_api_endpoint(reactor, kwargs), options, nickname, reactor=reactor)
    try:
        endpoint, _ = handler.inner.hint_to_endpoint("i2p:" + ":".join(args), reactor, lambda status: None)
    except InvalidHintError as e:
        raise ValueError("%s: %s" % (what, e)) from None
    return endpoint
