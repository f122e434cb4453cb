"""
How a command fails: the exit status a script can act on ("fix the file"
or "the network is down"), and the command line's words for advice the
library gives in terms of its Python API.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from foolscap.api import RemoteException
from foolscap.call import CopiedFailure

from ._output import PROG

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Usage(Exception):
    """A usage or configuration problem: exit status 2."""


class Failed(Exception):
    """A connection or start failure: exit status 1."""


class RemoteError(Exception):
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


def locally(d: Deferred) -> Deferred:
    """
    C{d}, with a remote failure turned into a L{RemoteError}.

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
            raise RemoteError(failure)
        return failure

    return d.addErrback(local)


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


def cli_words(text: str, config: Optional[str]) -> str:
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
