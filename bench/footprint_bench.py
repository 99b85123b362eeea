"""What one agent core and one sidecar cost: the statistical core per record, the 1M-row
window, and the agent's resident memory idle and under a steady 10k records/s.

* ``window``: ``bench.data``'s 25 features and score (27 columns with the time), a window
  of 1,000,000 rows fed to :class:`detectors.sketch.WindowSketch` in 100k-row batches and
  tested (``evaluate_window``), best of ``--repeat``; sketch µs/record is the update time
  over the rows, and a cProfile of one update says where the time goes;
* ``imports``: where an idle agent's memory goes: in fresh interpreters, the resident
  memory each library adds when imported in the agent's order, then what the agent's own
  modules add, and which heavy libraries importing the agent loads;
* ``rss``: the real agent (``python3 -m monitor.cli run``) against an embedded Tansu
  broker, once per Kafka client: resident memory (VmRSS) after start-up with no traffic,
  then while records arrive at ``--rate`` a second for ``--seconds`` (10 s windows), and
  the records it decoded, from its own ``/metrics``. The reference is built as
  ``driftline reference build`` builds it (with its run-length calibration and no-change
  laws), so the agent does not simulate them at start-up.

The library code comes from ``PYTHONPATH``, so running this file against another checkout
(``PYTHONPATH=/path/to/old python3 /path/to/new/bench/footprint_bench.py``) gives that
checkout's figures on the same machine in the same minutes; ``--baseline COMMIT`` does
that itself for the window (``COMMIT`` checked out with ``git worktree add``, each code in
its own process, turn about) and prints both. Run it with ``nice`` on a
shared machine; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WINDOW_ROWS = 1_000_000
BATCH_ROWS = 100_000


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def window(repeat: int) -> dict[str, Any]:
    """The 1M x 27 window: update and evaluation seconds (best of ``repeat``)."""
    from bench import data
    from detectors.evaluate import evaluate_window
    from detectors.profile import build_profile
    from detectors.sketch import WindowSketch

    profile = build_profile(data.reference(), schema=data.schema())
    frame = data.window(WINDOW_ROWS, "no_drift", seed=3)
    arrays = {str(c): frame[c].to_numpy() for c in frame.columns}

    def update() -> Any:
        sketch = WindowSketch(profile, seed=0)
        for start in range(0, WINDOW_ROWS, BATCH_ROWS):
            sketch.update({k: v[start : start + BATCH_ROWS] for k, v in arrays.items()})
        return sketch

    best: dict[str, float] | None = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        sketch = update()
        w1, c1 = time.perf_counter(), time.process_time()
        evaluate_window(profile, sketch)
        w2, c2 = time.perf_counter(), time.process_time()
        run = {
            "update_wall": w1 - w0,
            "update_cpu": c1 - c0,
            "evaluate_wall": w2 - w1,
            "evaluate_cpu": c2 - c1,
        }
        if best is None or run["update_cpu"] + run["evaluate_cpu"] < (
            best["update_cpu"] + best["evaluate_cpu"]
        ):
            best = run
    assert best is not None
    profiler = cProfile.Profile()
    profiler.enable()
    update()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
    lines = [line for line in text.getvalue().splitlines() if line.strip()][-9:]
    return {**best, "columns": len(arrays), "rows": WINDOW_ROWS, "profile": lines}


# Imported in this order, each in the same fresh interpreter after the ones before it: the
# libraries of the agent's running path, then the agent itself (docs/architecture.md,
# "Imports on the agent's path").
IMPORT_STEPS = (
    ("python", ()),
    ("numpy", ("numpy",)),
    ("scipy.special", ("scipy.special",)),
    ("msgspec, aiokafka", ("msgspec", "aiokafka")),
    ("prometheus_client", ("prometheus_client",)),
    ("pydantic, yaml, orjson", ("pydantic", "yaml", "orjson")),
    ("driftline's modules", ("monitor.cli", "monitor.runtime.aggregator", "monitor.runtime.agent")),
)
HEAVY = ("pandas", "pyarrow", "scipy.stats", "opentelemetry", "evidently", "confluent_kafka")

_IMPORTS_SCRIPT = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
out = []
for label, modules in json.loads(sys.argv[1]):
    for m in modules:
        importlib.import_module(m)
    out.append([label, rss()])
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"steps": out, "heavy": heavy}))
"""


def imports() -> dict[str, Any]:
    """Resident memory after each step of ``IMPORT_STEPS`` (KiB), in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT, json.dumps(IMPORT_STEPS), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
        cwd=tempfile.gettempdir(),  # not a checkout: the library comes from PYTHONPATH
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decoded(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("driftline_records_total{") and 'outcome="decoded"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def soak(
    client: str, rate: float, seconds: float, idle: float, role: str = "none"
) -> dict[str, Any]:
    """The agent with ``client``: RSS idle, then under ``rate`` records a second. With
    ``role`` both, the sidecar the injector makes: it publishes its partials and judges
    them too (the partials topic, created at start, round trip included)."""
    import yaml
    from confluent_kafka import Producer

    from bench import agent_bench, data
    from detectors.profile import build_profile
    from detectors.reference_laws import with_reference_laws
    from detectors.sequential_calibration import calibrate_sequential
    from monitor.demo.broker import TansuBroker, free_port

    work = Path(tempfile.mkdtemp(prefix="driftline-footprint-"))
    frame = data.reference()
    built = build_profile(frame, schema=data.schema())
    built = with_reference_laws(built.with_sequential(calibrate_sequential(built, frame)))
    profile = built.save(work / "ref.json")
    port = free_port()
    with TansuBroker() as broker:
        topic = "predictions"
        broker.create_topic(topic, 1)
        config = {
            "model": agent_bench.MODEL,
            "reference": str(profile),
            "source": {
                "kind": "kafka",
                "kafka": {
                    "bootstrap_servers": broker.bootstrap,
                    "topics": [topic],
                    "group_id": f"footprint-{client}-{role}",
                    # the key only where needed: older checkouts do not know it
                    **({"client": client} if client != "aiokafka" else {}),
                },
            },
            "windows": {"size": 10.0, "allowed_lateness": 5.0},
            "exporter": {"host": "127.0.0.1", "port": port},
            "reports": {"log": False, "file": str(work / "reports.jsonl")},
            "state": {"dir": str(work / "state")},
        }
        if role != "none":  # the key only where needed: older checkouts do not know it
            config["aggregation"] = {"role": role}
        (work / "monitor.yaml").write_text(yaml.safe_dump(config))
        agent = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "-c", str(work / "monitor.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=open(work / "agent.log", "wb"),  # noqa: SIM115 - the child owns it
            env=dict(os.environ),
            cwd=work,  # not a checkout: the library comes from PYTHONPATH
        )
        try:
            deadline = time.monotonic() + 120
            while decoded(port) < 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(idle)
            idle_kib = rss_kib(agent.pid)
            cpu_start = cpu_seconds(agent.pid)
            producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
            records = (
                r for chunk in agent_bench.record_chunks(10**9, 11, rate) for r in chunk
            )  # event times ``rate`` a second apart, from EPOCH
            samples: list[int] = []
            sent = 0
            start = time.monotonic()
            step = 0.1
            while time.monotonic() - start < seconds:
                due = int((time.monotonic() - start + step) * rate)
                while sent < due:
                    producer.produce(topic, next(records))
                    sent += 1
                producer.poll(0)
                samples.append(rss_kib(agent.pid))
                time.sleep(step)
            producer.flush(30)
            time.sleep(2)
            samples.append(rss_kib(agent.pid))
            got = decoded(port)
            cpu = cpu_seconds(agent.pid) - cpu_start
        finally:
            agent.terminate()
            agent.wait(60)
    samples.sort()
    return {
        "client": client,
        "role": role,
        "idle_kib": idle_kib,
        "soak_median_kib": samples[len(samples) // 2],
        "soak_max_kib": samples[-1],
        "sent": sent,
        "decoded": got,
        "cpu_s": cpu,
        "rate": rate,
        "seconds": seconds,
    }


def compare_windows(commit: str, repeat: int, rounds: int) -> None:
    """The 1M-row window on ``commit``'s code and on this tree's, ``rounds`` times each,
    alternating, each in a fresh process; prints the best CPU of each code."""
    tmp = Path(tempfile.mkdtemp(prefix="driftline-footprint-baseline-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), commit],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    codes = [(f"before ({commit})", tree), ("this tree", ROOT)]
    best: dict[str, dict[str, Any]] = {}
    try:
        for _ in range(rounds):
            for name, root in codes:
                out = tmp / "window.json"
                subprocess.run(
                    [
                        *(sys.executable, __file__, "--skip-rss", "--skip-imports"),
                        *("--repeat", str(repeat), "--output", str(out)),
                    ],
                    env={**os.environ, "PYTHONPATH": str(root)},
                    check=True,
                    capture_output=True,
                )
                w = json.loads(out.read_text())["window"]
                total = w["update_cpu"] + w["evaluate_cpu"]
                if name not in best or total < best[name]["total"]:
                    best[name] = {**w, "total": total}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    print("| code | sketch update, CPU s | evaluation, CPU s | total, CPU s | sketch µs/record |")
    print("| --- | --- | --- | --- | --- |")
    for name, w in best.items():
        print(
            f"| {name} | {w['update_cpu']:.3f} | {w['evaluate_cpu']:.3f} | {w['total']:.3f} "
            f"| {w['update_cpu'] / w['rows'] * 1e6:.3f} |"
        )
    first, last = best[codes[0][0]]["total"], best[codes[1][0]]["total"]
    print(f"\nthis tree / before: {last / first:.2f}× the CPU ({first / last:.1f}× faster)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rate", type=float, default=10_000.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--clients", default="aiokafka,confluent")
    p.add_argument("--roles", default="none", help="aggregation roles to soak: none,both")
    p.add_argument("--skip-window", action="store_true")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-imports", action="store_true")
    p.add_argument("--output", type=Path)
    p.add_argument("--baseline", metavar="COMMIT", help="compare the window with COMMIT's code")
    p.add_argument("--rounds", type=int, default=2, help="with --baseline: runs of each code")
    args = p.parse_args(argv)
    if args.baseline:
        start = load()
        compare_windows(args.baseline, args.repeat, args.rounds)
        print(f"load average {start} at the start, {load()} at the end")
        return 0
    out: dict[str, Any] = {"load_start": load(), "pythonpath": os.environ.get("PYTHONPATH")}
    if not args.skip_window:
        w = window(args.repeat)
        out["window"] = w
        total = w["update_cpu"] + w["evaluate_cpu"]
        print(
            f"1M x {w['columns']} window: update {w['update_cpu']:.3f} s CPU "
            f"({w['update_cpu'] / w['rows'] * 1e6:.3f} µs/record), evaluate "
            f"{w['evaluate_cpu']:.3f} s, total {total:.3f} s CPU "
            f"({w['update_wall'] + w['evaluate_wall']:.3f} s wall)"
        )
        print("\n".join(w["profile"]))
    if not args.skip_imports:
        imp = imports()
        out["imports"] = imp
        print("resident memory while importing the agent's path (fresh interpreter):")
        before = 0
        for label, kib in imp["steps"]:
            print(f"  {label:<24} +{(kib - before) / 1024:6.1f} MiB  = {kib / 1024:6.1f} MiB")
            before = kib
        print(f"  heavy libraries loaded: {', '.join(imp['heavy']) or 'none'}")
    if not args.skip_rss:
        out["rss"] = []
        runs = [
            (client, role)
            for role in args.roles.split(",")
            if role
            for client in args.clients.split(",")
            if client
        ]
        for client, role in runs:
            r = soak(client, args.rate, args.seconds, args.idle, role)
            out["rss"].append(r)
            print(
                f"{client}, role {role}: RSS idle {r['idle_kib'] / 1024:.0f} MiB; "
                f"at {r['rate']:,.0f} records/s "
                f"median {r['soak_median_kib'] / 1024:.0f} MiB, max {r['soak_max_kib'] / 1024:.0f} "
                f"MiB; {r['decoded']:,.0f} of {r['sent']:,} records decoded, "
                f"{r['cpu_s']:.1f} CPU s ({r['cpu_s'] / max(r['decoded'], 1) * 1e6:.1f} µs/record)"
            )
    out["load_end"] = load()
    print(f"load average {out['load_start']} at the start, {out['load_end']} at the end")
    if args.output:
        args.output.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
