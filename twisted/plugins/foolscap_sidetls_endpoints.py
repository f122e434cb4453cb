"""
Twisted endpoint-string plugins for the C{sidetls:} prefix.

Twisted finds this module through C{twisted.plugins}; the parsers live in
L{foolscap_sidetls._parser}.  Twisted imports every endpoint plugin it tries
before this one, in its plugin cache's order: when txi2p's comes first, a
C{sidetls:} string costs the seconds txi2p takes to import.  C{make install}
and the README's "plugin cache" steps put this module first.
"""

from foolscap_sidetls._parser import SideTLSClientParser, SideTLSServerParser

sidetlsServer = SideTLSServerParser()
sidetlsClient = SideTLSClientParser()
