# One entry point per task; every target builds .venv itself, so a fresh
# clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test bench bench-networks stress typecheck clean

# A plain editable install: pyproject.toml's package-dir makes setuptools put
# the checkout on sys.path with a .pth file, and Twisted looks for plugins in
# twisted/plugins under every sys.path entry.
#
# Then the plugin cache.  Twisted tries endpoint plugins in its cache's order
# and imports each one it passes: found after txi2p's plugin, a sidetls:
# string costs ~6 s in every process (txi2p compiles Parsley grammars on
# import).  The venv's own twisted/plugins comes first and is read in name
# order, so the plugin module is linked there, under a name that sorts before
# every other plugin's (the [tahoe] extra brings autobahn's, 0.27 s to import),
# and that cache rebuilt from scratch (an existing cache keeps its order and
# appends new plugins last).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,tor,i2p,tahoe]'
	dir=$$($(BIN)/python -c 'import os, twisted.plugins as p; print(os.path.dirname(p.__file__))') && \
	rm -f "$$dir/foolscap_sidetls_endpoints.py" && \
	ln -sf "$(CURDIR)/twisted/plugins/foolscap_sidetls_endpoints.py" "$$dir/_foolscap_sidetls_endpoints.py" && \
	rm -f "$$dir/dropin.cache"
	$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $(STAMP)

install: $(STAMP)

# Debian packages for the integration tests (real tor and i2pd daemons on
# loopback).  Needs root; without them those tests skip locally and fail
# under CI.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tor i2pd

demo: $(STAMP)
	$(BIN)/python examples/reverse_listener.py

test: $(STAMP)
	$(BIN)/python -m pytest tests

typecheck: $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/mypy foolscap_sidetls

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Needs tor and i2pd (make system-deps); starts the private networks the
# integration tests use, on 127.0.0.1 only.
bench-networks: $(STAMP)
	$(BIN)/python benchmarks/networks.py --rounds 5

# Too long for make test (minutes): 500 dialers at once, 1,000 connect/call/
# disconnect cycles and 500-connection floods, over loopback TCP only, against
# a listener in a process of its own; the table goes to
# benchmarks/stress-last-run.md.  Exits non-zero if a call failed or a
# descriptor was left open.
stress: $(STAMP)
	$(BIN)/python benchmarks/stress.py --markdown benchmarks/stress-last-run.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
