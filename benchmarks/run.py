"""
Stock Foolscap against foolscap-sidetls, over loopback TCP, in one run.

    .venv/bin/python benchmarks/run.py [--rounds N] [--quick]

Every round measures each metric for stock, then for sidetls, back to back,
so slow drift of the machine (thermal, other load) hits both alike; the
table reports medians over the rounds.  Each measurement is a fresh pair of
processes (listener, dialer) started by this driver, see _worker.py:

  (a) bulk: MiB/s of callRemote with 1 MiB bytes arguments, 4 in flight;
  (b) connections/s: fresh dialer Tubs (pre-generated certificates), one
      after another, each getReference + one small call, then disconnect;
  (c) RSS growth of the listener process per idle connection, at 500.

Only 127.0.0.1 is used.  Nothing here asserts on timings: the table says
whether each target is met, and that is all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import STOCK, SIDETLS, VARIANTS  # noqa: E402

WORKER = os.path.join(HERE, "_worker.py")
DEFAULT_OUTPUT = os.path.join(HERE, "last-run.md")

FULL = {"rounds": 9, "bulk_mib": 256, "inflight": 4, "connect": 200, "idle": 500}
QUICK = {"rounds": 3, "bulk_mib": 64, "inflight": 4, "connect": 50, "idle": 100}

#: A hang guard for one worker, not a measurement.
WORKER_TIMEOUT = 600


# -- certificates -----------------------------------------------------------


def _certificate(_: int) -> str:
    from foolscap import crypto

    pem = crypto.createCertificate().dumpPEM()
    return pem.decode("ascii") if isinstance(pem, bytes) else pem


def generate_certificates(count: int, path: str) -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        pems = list(pool.map(_certificate, range(count), chunksize=8))
    with open(path, "w") as f:
        json.dump(pems, f)
    return time.perf_counter() - t0


# -- one measurement ----------------------------------------------------------


class WorkerFailed(Exception):
    pass


def measure(workload: str, variant: str, options: list[str], certs: str,
            profile_dir: str | None = None) -> dict:
    """Start a listener, run one dialer workload against it, stop both."""
    listen_cmd = [sys.executable, WORKER, "listen", "--variant", variant,
                  "--certs", certs]
    dial_cmd = [sys.executable, WORKER, workload, "--variant", variant,
                "--certs", certs, *options]
    if profile_dir:
        listen_cmd += ["--profile", os.path.join(
            profile_dir, "%s-%s-listener.prof" % (workload, variant))]
        dial_cmd += ["--profile", os.path.join(
            profile_dir, "%s-%s-dialer.prof" % (workload, variant))]
    with tempfile.TemporaryFile() as listener_err:
        listener = subprocess.Popen(
            listen_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=listener_err, text=True,
        )
        try:
            line = listener.stdout.readline()
            if not line.startswith("FURL "):
                listener.wait(timeout=WORKER_TIMEOUT)
                listener_err.seek(0)
                raise WorkerFailed("listener (%s) did not start:\n%s%s" % (
                    variant, line, listener_err.read().decode(errors="replace")))
            furl = line.split()[1]
            dialer = subprocess.run(
                dial_cmd + ["--furl", furl], capture_output=True, text=True,
                timeout=WORKER_TIMEOUT,
            )
        finally:
            listener.stdin.close()
            try:
                listener.wait(timeout=60)
            except subprocess.TimeoutExpired:
                listener.kill()
                listener.wait()
        listener_err.seek(0)
        listener_log = listener_err.read().decode(errors="replace")
    results = [l for l in dialer.stdout.splitlines() if l.startswith("RESULT ")]
    if dialer.returncode != 0 or not results:
        raise WorkerFailed("%s dialer (%s) failed, exit %s:\n%s\n%s\nlistener:\n%s" % (
            workload, variant, dialer.returncode, dialer.stdout, dialer.stderr,
            listener_log))
    return json.loads(results[-1][len("RESULT "):])


# -- the table --------------------------------------------------------------


class Metric:
    def __init__(self, key, workload, field, label, unit, higher_is_better,
                 target=None):
        self.key, self.workload, self.field = key, workload, field
        self.label, self.unit = label, unit
        self.higher_is_better = higher_is_better
        self.target = target


def _metrics(settings: dict) -> list[Metric]:
    return [
        Metric("a", "bulk", "mib_per_s",
               "(a) bulk callRemote, 1 MiB args, %d in flight, %d MiB"
               % (settings["inflight"], settings["bulk_mib"]),
               "MiB/s", True, ("ratio", 0.98)),
        Metric("b", "connect", "conn_per_s",
               "(b) new connections (getReference + 1 call + close), %d in a row"
               % (settings["connect"],),
               "conn/s", True, ("ratio", 0.98)),
        Metric("b2", "connect", "median_ms",
               "(b) median time per connection (info)", "ms", False),
        Metric("c", "idle", "listener_kib_per_conn",
               "(c) listener RSS growth per idle connection, at %d"
               % (settings["idle"],),
               "KiB", False, ("diff", 4.0)),
        Metric("c2", "idle", "dialer_kib_per_conn",
               "(c) dialer-process RSS growth per connection (info)",
               "KiB", False),
    ]


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 10:
        return "%.1f" % value
    return "%.2f" % value


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows
    ]


def summarize(metrics, results):
    main_rows, spread_rows = [], []
    for m in metrics:
        stock = [r[m.field] for r in results[m.workload][STOCK]]
        side = [r[m.field] for r in results[m.workload][SIDETLS]]
        if not stock or not side:
            continue
        ms, mt = statistics.median(stock), statistics.median(side)
        ratio = mt / ms if ms else float("nan")
        diff = mt - ms
        if m.target is None:
            target, met = "", ""
        elif m.target[0] == "ratio":
            target = ">= %.2f" % m.target[1]
            met = "yes" if ratio >= m.target[1] else "NO"
        else:
            target = "<= stock + %g KiB" % m.target[1]
            met = "yes" if diff <= m.target[1] else "NO"
        main_rows.append([
            m.label, "%s %s" % (_fmt(ms), m.unit), "%s %s" % (_fmt(mt), m.unit),
            "%.3f" % ratio, "%+.2f" % diff, target, met,
        ])
        paired = sorted(t / s for s, t in zip(stock, side) if s)
        spread_rows.append([
            m.label,
            "%s – %s" % (_fmt(min(stock)), _fmt(max(stock))),
            "%s – %s" % (_fmt(min(side)), _fmt(max(side))),
            "%.3f (%.3f – %.3f)" % (statistics.median(paired), paired[0], paired[-1])
            if paired else "",
        ])
    table = _markdown(
        ["metric", "stock (median)", "sidetls (median)", "sidetls/stock",
         "sidetls − stock", "target", "met"], main_rows)
    spread = _markdown(
        ["metric", "stock min – max", "sidetls min – max",
         "per-round sidetls/stock: median (min – max)"], spread_rows)
    return table, spread


def machine() -> list[str]:
    import OpenSSL
    import foolscap
    import twisted
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        "- date: %s" % datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M:%S UTC"),
        "- machine: %d CPUs (nproc), %s; Linux %s; load average at start %s"
        % (len(os.sched_getaffinity(0)), cpu, platform.release(),
           " ".join("%.2f" % x for x in os.getloadavg())),
        "- Python %s, Twisted %s, Foolscap %s, pyOpenSSL %s, %s"
        % (platform.python_version(), twisted.__version__, foolscap.__version__,
           OpenSSL.__version__, backend.openssl_version_text()),
    ]


# -- driver -----------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark stock Foolscap against foolscap-sidetls "
        "(loopback TCP, alternating rounds).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per metric and variant (default 9; 3 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 rounds, smaller workloads (~1-2 min); "
                        "does not write last-run.md unless --output is given")
    parser.add_argument("--only", choices=["bulk", "connect", "idle"], action="append",
                        help="run only these workloads (repeatable)")
    parser.add_argument("--output", default=None,
                        help="markdown report (default benchmarks/last-run.md for full runs)")
    parser.add_argument("--profile-dir", default=None,
                        help="also write cProfile stats of the timed part of each "
                        "workload's last round (both processes) here")
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        settings["rounds"] = args.rounds
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    workloads = args.only or ["bulk", "connect", "idle"]
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable] + sys.argv))
    info = machine()
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)

    options = {
        "bulk": ["--mib", str(settings["bulk_mib"]),
                 "--inflight", str(settings["inflight"])],
        "connect": ["--count", str(settings["connect"])],
        "idle": ["--count", str(settings["idle"])],
    }
    needed = 2 + max(5 + settings["connect"], 20 + settings["idle"])
    rounds = settings["rounds"]
    print("\n".join(info))
    print("- command: %s" % command, flush=True)

    results = {w: {v: [] for v in VARIANTS} for w in ["bulk", "connect", "idle"]}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sidetls-bench-") as tmp:
        certs = os.path.join(tmp, "certs.json")
        print("generating %d certificates ..." % needed, end=" ", flush=True)
        print("%.1f s" % generate_certificates(needed, certs), flush=True)
        for n in range(rounds):
            progress = []
            for workload in workloads:
                for variant in VARIANTS:
                    profile = args.profile_dir if n == rounds - 1 else None
                    r = measure(workload, variant, options[workload], certs, profile)
                    results[workload][variant].append(r)
                key = {"bulk": "mib_per_s", "connect": "conn_per_s",
                       "idle": "listener_kib_per_conn"}[workload]
                progress.append("%s %s/%s" % (
                    workload, _fmt(results[workload][STOCK][-1][key]),
                    _fmt(results[workload][SIDETLS][-1][key])))
            print("round %d/%d (stock/sidetls): %s  [%.0f s]" % (
                n + 1, rounds, "  ".join(progress), time.perf_counter() - started),
                flush=True)

    metrics = [m for m in _metrics(settings) if m.workload in workloads]
    table, spread = summarize(metrics, results)
    report = [
        "## foolscap-sidetls benchmark%s" % (" (quick smoke run)" if args.quick else ""),
        "",
        "Stock Foolscap vs foolscap-sidetls over loopback TCP (127.0.0.1); "
        "medians of %d rounds, stock and sidetls measured alternately in one "
        "run, each measurement in a fresh listener process and dialer process."
        % rounds,
        "",
        *table,
        "",
        "Spread across rounds:",
        "",
        *spread,
        "",
        *info,
        "- command: `%s`" % command,
        "- total time: %.0f s" % (time.perf_counter() - started),
        "",
        "(c) is measured in the listener process (one Tub, one connection per "
        "dialer Tub), RSS from /proc/self/status after gc.collect(), with a "
        "baseline taken after 20 warm-up connections were opened and closed.",
    ]
    print()
    print("\n".join(report))
    if output:
        with open(output, "w") as f:
            f.write("\n".join(report) + "\n")
        print("\nwritten to %s" % os.path.relpath(output))


if __name__ == "__main__":
    main()
