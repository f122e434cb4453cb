"""Tests of foolscap_sidetls.config: configuration files, checked before anything starts, and the Tub they describe."""
