"""
Real Tahoe-LAFS grids over private Tor and I2P, stock against
foolscap-sidetls: time to a formed grid and put/get throughput.

    .venv/bin/python benchmarks/tahoe_grid.py [--rounds N] [--only tor|i2p]
                                              [--variants stock,sidetls-client,sidetls]
                                              [--sizes 1,10] [--output FILE]

Starts the private networks the integration tests use (tests/integration:
1 authority + 3 relays + 2 client tors; one i2pd as its own floodfill, all
on 127.0.0.1), then, for each round, network and variant, builds a fresh
grid with tests/integration/_tahoe_grid.py -- an introducer, 2 storage
nodes and a client-only node, ``tcp = disabled``, ``reveal-IP-address =
false``, 1-of-2 encoding with happy=2 -- and measures:

  intro    from the client's ``tahoe run`` to its introducer connection;
  first    from the client's ``tahoe run`` to its first storage server;
  formed   from the introducer's ``tahoe run`` to the client seeing both
           storage servers (the grid formed);
  put/get  ``tahoe put`` / ``tahoe get`` of N MiB of random data (checked
           byte-identical), as MiB/s; the stock CLI, timed as a whole
           (process start included, ~1 s).

Variants.  Tor: ``stock`` is ``tahoe run`` (with ``[tor] socks.port``, as
stock Foolscap cannot dial through a tor whose SocksPort is ADDRESS:PORT
given only ``control.port``); ``sidetls`` is ``python -m
foolscap_sidetls.tahoe run`` with only ``[tor] control.port``.  Storage is
HTTPS (Tahoe 1.20's default) unless ``--force-foolscap``.  I2P: ``stock`` is
stock Tahoe with txi2p's ``invertTLS`` (the only way stock Tahoe works over
I2P) and the zero-hop session options this router needs patched into txi2p
in the child (``tests/integration/_tahoe_stock.py``; Tahoe cannot pass
them); ``sidetls`` gets them from ``[i2p] i2cp.options``.  On both
networks ``sidetls-client`` is the stock grid with a sidetls client-only
node (its handlers and options from tahoe.cfg alone).  Medians over the
rounds, with min-max.  Nothing asserts on timings; a table is printed and
written to --output if given.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.integration import _i2pnet, _tahoe_grid, _tornet  # noqa: E402

MiB = 2**20
VARIANTS = ("stock", "sidetls-client", "sidetls")


def runners_for(network: Any, variant: str) -> tuple[_tahoe_grid.Runner, dict[str, _tahoe_grid.Runner]]:
    """(the default runner, per-node exceptions) of a variant."""
    if variant == "sidetls":
        return _tahoe_grid.SIDETLS, {}
    if variant == "stock":
        return network.stock(invert_tls=True), {}
    if variant == "sidetls-client":
        return network.stock(invert_tls=True), {"client": _tahoe_grid.SIDETLS}
    raise SystemExit("unknown variant %r (accepted: %s)" % (variant, ", ".join(VARIANTS)))


def one_grid(workdir: Path, network: Any, variant: str, sizes: list[int], config: dict) -> dict[str, float]:
    """Form one grid and move each size through it; the measurements."""
    default, runners = runners_for(network, variant)
    grid = _tahoe_grid.started(workdir, network, default, runners=runners, config=config)
    try:
        t = grid.wait_formed(2)
        row = {"intro": t.introducer or float("nan"), "first": t.first_server or float("nan"), "formed": t.total or float("nan")}
        for size in sizes:
            sent, received, _cap, put_took, get_took = _tahoe_grid.round_trip(grid, workdir, size * MiB)
            if received != sent:
                raise _tahoe_grid.GridError("%s: %d MiB read back differs from what was put" % (variant, size))
            row["put %d MiB" % size] = size / put_took
            row["get %d MiB" % size] = size / get_took
        return row
    finally:
        grid.stop()
        grid.remove()


def median_range(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return "%.2f" % med
    return "%.2f (%.2f-%.2f)" % (med, min(values), max(values))


def table(title: str, results: dict[str, list[dict[str, float]]], sizes: list[int]) -> list[str]:
    columns = ["intro", "first", "formed"] + ["%s %d MiB" % (op, s) for s in sizes for op in ("put", "get")]
    heads = ["client->introducer, s", "first server, s", "grid formed, s"] + [
        "%s %d MiB, MiB/s" % (op, s) for s in sizes for op in ("put", "get")
    ]
    lines = ["### " + title, "", "| variant | " + " | ".join(heads) + " |", "|" + " --- |" * (len(heads) + 1)]
    for variant, rows in results.items():
        cells = [median_range([r[c] for r in rows if c in r]) for c in columns]
        lines.append("| %s | %s |" % (variant, " | ".join(cells)))
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=("tor", "i2p"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--sizes", default="1,10", help="MiB per file, comma-separated")
    parser.add_argument("--force-foolscap", action="store_true", help="Tor: [storage] force_foolscap = true")
    parser.add_argument("--output", type=Path, default=None, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1, not %d" % args.rounds)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes whole MiB counts separated by commas (e.g. 1,10), not %r" % args.sizes)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error("--variants: %r is not one of %s" % (v, ", ".join(VARIANTS)))
    if any(v.startswith("sidetls") for v in variants):
        why = _tahoe_grid.sidetls_unavailable()
        if why is not None:
            raise SystemExit("cannot measure sidetls: " + why)

    work = Path(tempfile.mkdtemp(prefix="sidetls-tahoe-bench-"))
    networks: list[tuple[str, Any, Callable[[], None]]] = []
    try:
        tornet = router = None
        if args.only in (None, "tor"):
            tornet = _tornet.TorNetwork(work / "tornet")
            tornet.start()
        if args.only in (None, "i2p"):
            router = _i2pnet.I2PRouter(work / "i2pnet")
            router.start()
        if tornet is not None:
            tornet.wait(180)
            networks.append(("tor", _tahoe_grid.TorNetwork(tornet), tornet.stop))
        if router is not None:
            router.wait(60)
            networks.append(("i2p", _tahoe_grid.I2PNetwork(router), router.stop))
        storage = "Foolscap" if args.force_foolscap else "HTTPS"
        config = {"storage": {"storage": {"force_foolscap": "true"}}} if args.force_foolscap else {}
        results: dict[str, dict[str, list[dict[str, float]]]] = {}
        failures: dict[str, str] = {}
        for round_ in range(args.rounds):
            for name, network, _ in networks:
                for variant in variants:
                    label = variant
                    if name == "i2p" and variant == "stock":
                        label = "stock (txi2p invertTLS)"
                    began = time.monotonic()
                    results.setdefault(name, {}).setdefault(label, [])
                    try:
                        row = one_grid(
                            work / ("%s-%s-%d" % (name, variant, round_)),
                            network,
                            variant,
                            sizes,
                            config if name == "tor" else {},
                        )
                    except _tahoe_grid.GridError as e:
                        # a variant that cannot form a grid is a result too: "-" in the table
                        failures.setdefault("%s %s" % (name, label), str(e).splitlines()[0][:400])
                        print("round %d %s %s: FAILED: %s" % (round_ + 1, name, label, str(e).splitlines()[0][:400]), flush=True)
                        # the nodes' logs (the work directory is removed at the end)
                        print(str(e), file=sys.stderr, flush=True)
                        continue
                    results[name][label].append(row)
                    print(
                        "round %d %s %s: %s (%.0f s)"
                        % (round_ + 1, name, label, ", ".join("%s %.2f" % kv for kv in row.items()), time.monotonic() - began),
                        flush=True,
                    )
    finally:
        for _, _, stop in networks:
            stop()
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "## Tahoe-LAFS grid benchmark, %s" % datetime.date.today().isoformat(),
        "",
        "`python benchmarks/tahoe_grid.py %s` on %s, %d CPUs, Python %s, Tahoe-LAFS %s."
        % (
            " ".join(argv if argv is not None else sys.argv[1:]),
            platform.platform(),
            os.cpu_count() or 0,
            platform.python_version(),
            _tahoe_version(),
        ),
        "Medians over %d round(s) (min-max). Times from `tahoe run`; put/get through the stock CLI, process start included."
        % args.rounds,
        "",
    ]
    if "tor" in results:
        lines += table("Tor (private network, 6 tors on loopback; %s storage)" % storage, results["tor"], sizes)
    if "i2p" in results:
        lines += table("I2P (one private i2pd, zero-hop tunnels; Foolscap storage)", results["i2p"], sizes)
    if failures:
        lines += ["Failed (no grid formed):", ""] + ["- %s: %s" % item for item in failures.items()] + [""]
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


def _tahoe_version() -> str:
    try:
        from importlib.metadata import version

        return version("tahoe-lafs")
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
