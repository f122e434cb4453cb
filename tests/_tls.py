"""Kept so that tests importing C{tests._tls} keep working; the home is L{tests._support.tls}."""

from ._support.tls import (  # noqa: F401
    Speaker,
    SpeakerFactory,
    certificate,
    foolscapOptions,
    outerClientOptions,
    outerServerOptions,
)
