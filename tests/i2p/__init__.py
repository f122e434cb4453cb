"""Tests of foolscap_sidetls.i2p, laid out like the package (tests/i2p/sam: the SAM client)."""
