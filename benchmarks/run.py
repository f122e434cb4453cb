"""
Stock Foolscap against foolscap-sidetls, over loopback TCP, in one run.

    .venv/bin/python benchmarks/run.py [--rounds N] [--quick]

Every round measures each metric for stock, then sidetls, then sidetls-api
(sidetls with the listener built by the Python API instead of the
"sidetls:" string), back to back, so slow drift of the machine (thermal,
other load) hits all alike; the tables report medians over the rounds and
the spread.  Each measurement is a fresh pair of
processes (listener, dialer) started by this driver, see _worker.py:

  (a) bulk: MiB/s of callRemote with 1 MiB bytes arguments, 4 in flight;
  (b) connections/s: fresh dialer Tubs (pre-generated certificates), one
      after another, each getReference + one small call, then disconnect;
  (c) RSS growth of the listener process per idle connection, at 500.

Only 127.0.0.1 is used.  Nothing here asserts on timings: the table says
whether each target is met, and that is all.  profile_connect.py profiles
(b) in both processes.
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
from _common import SIDETLS, SIDETLS_API, STOCK, VARIANTS  # noqa: E402

WORKER = os.path.join(HERE, "_worker.py")
DEFAULT_OUTPUT = os.path.join(HERE, "last-run.md")

FULL = {"rounds": 9, "bulk_mib": 512, "inflight": 4, "connect": 200, "idle": 500}
QUICK = {"rounds": 3, "bulk_mib": 64, "inflight": 4, "connect": 50, "idle": 100}

WORKLOADS = ("bulk", "connect", "idle")
PROGRESS = {"bulk": ("mib_per_s", "MiB/s"), "connect": ("conn_per_s", "conn/s"),
            "idle": ("listener_kib_per_conn", "KiB/conn")}
DESCRIPTIONS = {
    SIDETLS: "Stock vs sidetls (listener `tub.listenOn(\"sidetls:tcp:0:"
             "interface=127.0.0.1\")`, dialers `foolscap_sidetls.install(tub)`)",
    SIDETLS_API: "Stock vs sidetls-api (the same, but the listener built with "
                 "`listener(serverFromString(reactor, \"tcp:0:interface="
                 "127.0.0.1\"))`, so Twisted loads no endpoint plugins)",
}
def notes(settings: dict) -> list[str]:
    return [line.replace("{idle}", str(settings["idle"])) for line in NOTES]


NOTES = [
    "Notes:",
    "",
    "- Stock: `tub.listenOn(\"tcp:0:interface=127.0.0.1\")` and Foolscap's "
    "default tcp hint handler.  Every dialer Tub uses a certificate generated "
    "before timing.",
    "- (a) checks every answer (length and echoed head/tail of each distinct "
    "1 MiB argument) and the listener's byte count.",
    "- (b) times only the connections: each Tub is created and started "
    "before the clock starts, then does getReference, one `ping` call and "
    "`stopService()`, which fires once the connection is closed.",
    "- (c) is measured in the listener process, which holds one Tub and one "
    "connection per dialer Tub, so its growth is per-connection state only: "
    "VmRSS from /proc/self/status after gc.collect(), baseline after 20 "
    "warm-up connections were opened and closed, then {idle} connections "
    "opened (8 at a time) and left idle for 1 s.  The dialer process's "
    "growth (its Tubs all built before the baseline) is shown for comparison.",
    "- Parsing `\"sidetls:...\"` makes Twisted import endpoint-parser "
    "plugins until one matches; here txi2p's comes first (seconds of CPU, "
    "~45 MiB), see the last two rows.  A listener whose heap holds that much "
    "freed import-time memory grows less per connection, so sidetls-api is "
    "the like-for-like comparison for (c).",
    "- CPU times are `time.process_time()` of both processes over the timed "
    "part, excluding the gc.collect() of the listener's stats calls; they "
    "are less disturbed than wall-clock rates by other load on the machine.",
    "- Other load: CPU the whole machine used while timing (/proc/stat, "
    "steal included) minus the two benchmark processes' own, in cores; "
    "rounds with more of it have slower wall-clock rates.",
]

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
    def __init__(self, workload, field, label, unit, target=None, compare=True):
        self.workload, self.field = workload, field
        self.label, self.unit = label, unit
        #: False for conditions rather than results (no ratio, no difference).
        self.compare = compare
        #: ("ratio", r): sidetls/stock >= r; ("diff", d): sidetls - stock <= d.
        self.target = target


def _metrics(settings: dict) -> list[Metric]:
    return [
        Metric("bulk", "mib_per_s",
               "(a) bulk callRemote, 1 MiB args, %d in flight, %d MiB/round"
               % (settings["inflight"], settings["bulk_mib"]),
               "MiB/s", ("ratio", 0.98)),
        Metric("bulk", "cpu_ms_per_mib",
               "(a) CPU time per MiB, both processes (info)", "ms"),
        Metric("bulk", "other_cores",
               "(a) other load on the machine while timing (info)", "cores",
               compare=False),
        Metric("connect", "conn_per_s",
               "(b) connections/s: getReference + 1 call + close, %d in a row"
               % (settings["connect"],),
               "conn/s", ("ratio", 0.98)),
        Metric("connect", "median_ms",
               "(b) median time per connection (info)", "ms"),
        Metric("connect", "cpu_ms_per_conn",
               "(b) CPU time per connection, both processes (info)", "ms"),
        Metric("connect", "other_cores",
               "(b) other load on the machine while timing (info)", "cores",
               compare=False),
        Metric("idle", "listener_kib_per_conn",
               "(c) listener RSS growth per idle connection, at %d"
               % (settings["idle"],),
               "KiB", ("diff", 4.0)),
        Metric("idle", "dialer_kib_per_conn",
               "(c) dialer-process RSS growth per connection (info)", "KiB"),
        Metric("idle", "listener_ready_mib",
               "listener process RSS once listening (info)", "MiB"),
        Metric("connect", "listener_listen_ms",
               "listener CPU to parse the description and listen (info)", "ms"),
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


def _values(results, metric, variant):
    return [r[metric.field] for r in results[metric.workload][variant]]


def comparison(metrics, results, variant: str) -> list[str]:
    """The stock-vs-variant table: medians, ratio, difference, target."""
    rows = []
    for m in metrics:
        stock, other = _values(results, m, STOCK), _values(results, m, variant)
        if not stock or not other:
            continue
        ms, mo = statistics.median(stock), statistics.median(other)
        ratio = mo / ms if ms else float("nan")
        diff = mo - ms
        if m.target is None:
            target, met = "", ""
        elif m.target[0] == "ratio":
            target = ">= %.2f" % m.target[1]
            met = "yes" if ratio >= m.target[1] else "NO"
        else:
            target = "<= stock + %g KiB" % m.target[1]
            met = "yes" if diff <= m.target[1] else "NO"
        rows.append([
            m.label, "%s %s" % (_fmt(ms), m.unit), "%s %s" % (_fmt(mo), m.unit),
            "%.3f" % ratio if m.compare else "",
            "%+.2f %s" % (diff, m.unit) if m.compare else "", target, met,
        ])
    return _markdown(
        ["metric", "stock (median)", "%s (median)" % variant,
         "%s/stock" % variant, "%s − stock" % variant, "target", "met"], rows)


def spread(metrics, results, variants) -> list[str]:
    """Min - max per variant, and the per-round paired ratios."""
    others = [v for v in variants if v != STOCK]
    rows = []
    for m in metrics:
        row = [m.label]
        for v in variants:
            values = _values(results, m, v)
            row.append("%s – %s" % (_fmt(min(values)), _fmt(max(values)))
                       if values else "")
        for v in others:
            if not m.compare:
                row.append("")
                continue
            paired = sorted(o / s for s, o in zip(_values(results, m, STOCK),
                                                  _values(results, m, v)) if s)
            row.append("%.3f (%.3f – %.3f)" % (
                statistics.median(paired), paired[0], paired[-1]) if paired else "")
        rows.append(row)
    return _markdown(
        ["metric"] + ["%s min – max" % v for v in variants]
        + ["round by round %s/stock: median (min – max)" % v for v in others],
        rows)


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
    parser.add_argument("--only", choices=WORKLOADS, action="append",
                        help="run only this workload (repeatable)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, measured in this order each round "
                        "(default %(default)s; stock is always included)")
    parser.add_argument("--output", default=None,
                        help="markdown report (default benchmarks/last-run.md "
                        "for full runs)")
    parser.add_argument("--profile-dir", default=None,
                        help="also write cProfile stats of the timed part of each "
                        "workload's last round (both processes) here")
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        settings["rounds"] = args.rounds
    variants = [v for v in args.variants.split(",") if v]
    if any(v not in VARIANTS for v in variants):
        parser.error("--variants: choose from %s" % ", ".join(VARIANTS))
    variants = [STOCK] + [v for v in variants if v != STOCK]
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    workloads = args.only or list(WORKLOADS)
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

    results = {w: {v: [] for v in variants} for w in WORKLOADS}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sidetls-bench-") as tmp:
        certs = os.path.join(tmp, "certs.json")
        print("generating %d certificates ..." % needed, end=" ", flush=True)
        print("%.1f s" % generate_certificates(needed, certs), flush=True)
        for n in range(rounds):
            progress = []
            for workload in workloads:
                for variant in variants:
                    profile = args.profile_dir if n == rounds - 1 else None
                    r = measure(workload, variant, options[workload], certs, profile)
                    results[workload][variant].append(r)
                key, unit = PROGRESS[workload]
                progress.append("%s %s %s" % (workload, "/".join(
                    _fmt(results[workload][v][-1][key]) for v in variants), unit))
            print("round %d/%d (%s): %s  [%.0f s]" % (
                n + 1, rounds, "/".join(variants), "; ".join(progress),
                time.perf_counter() - started), flush=True)

    metrics = [m for m in _metrics(settings) if m.workload in workloads]
    report = [
        "## foolscap-sidetls benchmark%s" % (" (quick smoke run)" if args.quick else ""),
        "",
        "Stock Foolscap vs foolscap-sidetls over loopback TCP (127.0.0.1): "
        "medians of %d rounds; in every round each metric is measured for %s "
        "in turn, each measurement in a fresh listener process and dialer "
        "process." % (rounds, ", ".join(variants)),
        "",
    ]
    for variant in variants[1:]:
        report += ["%s:" % DESCRIPTIONS[variant], "",
                   *comparison(metrics, results, variant), ""]
    report += [
        "Spread across rounds:",
        "",
        *spread(metrics, results, variants),
        "",
        *info,
        "- command: `%s`" % command,
        "- total time: %.0f s" % (time.perf_counter() - started),
        "",
        *notes(settings),
    ]
    print()
    print("\n".join(report))
    if output:
        with open(output, "w") as f:
            f.write("\n".join(report) + "\n")
        print("\nwritten to %s" % os.path.relpath(output))


if __name__ == "__main__":
    main()
