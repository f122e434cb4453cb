"""
A SAM v3 client for Twisted: the I2P router's SAM bridge (i2pd, Java I2P)
as endpoints.  It imports nothing of Foolscap: L{foolscap_sidetls.i2p} puts
Foolscap's hint handler, C{listen(tub, ...)} and the i2pd launcher on top.

The layers, one module each:
  - L{_wire}: one socket to the bridge -- C{HELLO}, one command at a time,
    replies parsed (L{parse_reply}) and bounded (L{MAX_LINE}), a
    stream's bytes then handed to the application;
  - L{_destination}: destinations, their C{.b32.i2p} address, L{I2PAddress};
  - L{_session}: L{SAMBridge} (C{DEST GENERATE}, C{NAMING LOOKUP}) and
    L{SAMSession} (C{SESSION CREATE}, opened on first use, reopened after
    the bridge dropped it, a stuck create explained);
  - L{_client}: L{SAMClientEndpoint} (C{STREAM CONNECT});
  - L{_server}: L{SAMServerEndpoint} (C{STREAM ACCEPT}s, one bounded backoff
    for every failure).

Why a SAM client of our own rather than txi2p (txi2p-tahoe 0.3.7, the one
Tahoe-LAFS uses, installed with the C{i2p} extra), measured with
C{python benchmarks/i2p_vs_txi2p.py} (fresh processes, a fake SAM bridge on
127.0.0.1; the figures of one run on this project's 2-core machine):

  - import: C{import twisted.plugins.txi2p_endpoint_parsers} (what
    Twisted's plugin search imports for an C{i2p:} description) costs
    4.28 s of CPU (4.07-4.84, median of 5 processes), every process: its
    Parsley grammars are compiled at import; C{import foolscap_sidetls.i2p}
    costs 0.04 s.  A C{sidetls:i2p:} description is parsed in 0.13 s of
    CPU (4.4-5.5 s when it went through txi2p).
  - a process-global registry: txi2p keeps one session per nickname for
    the whole process (C{txi2p.sam.session._sessions}), whatever the SAM
    bridge; a second listener with the same nickname on another bridge
    got the first bridge's session (0 SESSION CREATEs on its own bridge;
    here: 1).  Sessions here belong to their handler or listener.
  - a lost session: after the bridge dropped it, txi2p sent 0 SESSION
    CREATEs in 3 s and its listener stayed on the dead session; this
    client reopened it (1, after the first backoff step, 0.5 s).
  - the accept loop: when the bridge fails STREAM ACCEPTs (a bad peer
    line, or accepting sockets closed and new ones refused), txi2p opens
    no further accept (0 SAM connections in 3 s) and, once the bridge
    heals, still none 12 s later: the listener is up and deaf.  This
    client backs off (4 connections in 3 s: 0.5 s doubling to 10 s, one
    warning per step) and has its 2 accepts pending again once it heals.
  - key files: txi2p writes a new key with C{open(path, "w")} (in place,
    so a crash can leave half a key; mode 0o644 under umask 022); here
    L{foolscap_sidetls._files.write_private}: 0o600 from the first byte,
    written to a temporary file and renamed.

So this package keeps its client, and txi2p stays what the integration
tests compare against (tests/integration: txi2p's listener, as a stock
Foolscap or Tahoe-LAFS node has it, with and without the sidetls wrapper).
The C{sidetls:i2p:} endpoint string uses this client too (see
L{foolscap_sidetls.i2p._strings}), so parsing one never imports txi2p.
"""

from __future__ import annotations

from ._client import SAMClientEndpoint
from ._destination import SIGNATURE_TYPE, I2PAddress, b32, i2p_b64decode, public_part
from ._errors import I2PError, SAMConnectionLost, SAMRefused, SAMTimeout, SAMUnreachable
from ._server import PENDING_ACCEPTS, RETRY_FIRST, RETRY_MAX, RETRY_RESET, SAMListeningPort, SAMServerEndpoint
from ._session import (
    OPENING_SESSION,
    SESSION_TIMEOUT,
    IRouterLauncher,
    SAMBridge,
    SAMSession,
    check_nickname,
    check_options,
)
from ._wire import HELLO_TIMEOUT, MAX_LINE, I2PStreamTransport, SAMConnection, parse_reply

__all__ = [
    "HELLO_TIMEOUT",
    "MAX_LINE",
    "OPENING_SESSION",
    "PENDING_ACCEPTS",
    "RETRY_FIRST",
    "RETRY_MAX",
    "RETRY_RESET",
    "SESSION_TIMEOUT",
    "SIGNATURE_TYPE",
    "I2PAddress",
    "I2PError",
    "I2PStreamTransport",
    "IRouterLauncher",
    "SAMBridge",
    "SAMClientEndpoint",
    "SAMConnection",
    "SAMConnectionLost",
    "SAMListeningPort",
    "SAMRefused",
    "SAMServerEndpoint",
    "SAMSession",
    "SAMTimeout",
    "SAMUnreachable",
    "b32",
    "check_nickname",
    "check_options",
    "i2p_b64decode",
    "parse_reply",
    "public_part",
]
