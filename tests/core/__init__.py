"""Tests of the core: the wrapper, its endpoints and handlers, and the testing package."""
