"""Tests of the SAM v3 client, foolscap_sidetls.i2p.sam."""
