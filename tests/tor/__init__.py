"""Tests of foolscap_sidetls.tor, in memory: a fake control port, a fake process reactor."""
