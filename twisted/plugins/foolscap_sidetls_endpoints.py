"""
Twisted endpoint-string plugins for the C{sidetls:} prefix.

Twisted finds this module through C{twisted.plugins}; the parsers live in
L{foolscap_sidetls._parser}.
"""

from foolscap_sidetls._parser import SideTLSClientParser, SideTLSServerParser

sidetlsServer = SideTLSServerParser()
sidetlsClient = SideTLSClientParser()
