"""Tests of L{foolscap_sidetls.relay}: wire, hidden Tub, relay, and attacks on it."""
