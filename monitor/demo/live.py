"""``driftline demo``: the embedded broker, a synthetic model whose traffic drifts, and the
agent, with a live view of the windows it closes and what it finds in them.

Everything runs in this process except the broker (the Tansu binary from the ``demo``
extra), on 127.0.0.1. At the end the demo says, for each injected drift, in which window
the agent found it and how long after the change.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from detectors.profile import build_profile
from detectors.results import WindowReport
from monitor.config.model import MonitorConfig
from monitor.demo import synthetic
from monitor.demo.broker import TansuBroker, free_port, tansu_binary
from monitor.outputs.server import PortInUseError
from monitor.runtime.agent import Agent

log = logging.getLogger(__name__)

MODEL = "credit-scorer"
VERSION = "v1"
TOPIC = "predictions"


@dataclass
class Finding:
    drift: synthetic.Drift
    window_start: float | None = None
    window_end: float | None = None
    latency: float | None = None


@dataclass
class DemoState:
    started: float = field(default_factory=time.time)
    produced: int = 0
    reports: list[WindowReport] = field(default_factory=list)


class _ListSink:
    def __init__(self, state: DemoState) -> None:
        self.state = state

    def write(self, report: WindowReport) -> None:
        self.state.reports.append(report)

    def close(self) -> None:
        return None


def found(report: WindowReport, drift: synthetic.Drift) -> bool:
    """Whether a window report shows the injected drift."""
    if drift.kind == "mean_shift":
        return any(c.feature == drift.feature and c.drifted for c in report.drift.columns)
    if drift.kind == "new_category":
        unseen = any(
            q.feature == drift.feature and q.check == "unseen" and q.breached
            for q in report.quality.checks
        )
        drifted = any(c.feature == drift.feature and c.drifted for c in report.drift.columns)
        return unseen or drifted
    if drift.kind == "missing_spike":
        return any(
            q.feature == drift.feature and q.check == "missing" and q.breached
            for q in report.quality.checks
        )
    return False


def findings(state: DemoState, schedule: tuple[synthetic.Drift, ...]) -> list[Finding]:
    out = []
    for drift in schedule:
        injected_at = state.started + drift.at
        f = Finding(drift)
        for r in sorted(state.reports, key=lambda r: r.window_start):
            if r.window_end > injected_at and found(r, drift):
                f.window_start, f.window_end = r.window_start, r.window_end
                f.latency = r.evaluated_at - injected_at if r.evaluated_at else None
                break
        out.append(f)
    return out


def demo_config(
    bootstrap: str, reference: Path, state_dir: Path, port: int, window_seconds: float
) -> MonitorConfig:
    return MonitorConfig.model_validate(
        {
            "model": MODEL,
            "reference": str(reference),
            "source": {
                "kind": "kafka",
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topics": [TOPIC],
                    "group_id": "driftline-demo",
                    "start": "earliest",
                    "session_timeout_ms": 3000,
                    "heartbeat_interval_ms": 300,
                    "rebalance_timeout_ms": 3000,
                },
            },
            "windows": {
                "size": window_seconds,
                "allowed_lateness": 1.0,
                "idle_timeout": max(2.0, window_seconds),
            },
            "exporter": {"host": "127.0.0.1", "port": port},
            "reports": {"log": False},
            "state": {"dir": str(state_dir), "checkpoint_interval": 2.0},
        }
    )


async def produce(
    bootstrap: str,
    state: DemoState,
    rate: int,
    duration: float,
    schedule: tuple[synthetic.Drift, ...],
    stop: asyncio.Event,
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    rng = np.random.default_rng(7)
    tick = 0.1
    try:
        while not stop.is_set():
            elapsed = time.time() - state.started
            if elapsed >= duration:
                break
            n = max(1, int(rate * tick))
            active = synthetic.active_drifts(schedule, elapsed)
            frame = synthetic.features(n, rng, active)
            now = time.time()
            times = now - rng.uniform(0, tick, n)
            for rec in synthetic.records(frame, times, MODEL, VERSION, rng):
                await producer.send(TOPIC, orjson.dumps(rec), key=str(rec["request_id"]).encode())
            state.produced += n
            await asyncio.sleep(max(0.0, tick - (time.time() - now)))
        await producer.flush()
    finally:
        await producer.stop()


def render(
    state: DemoState, schedule: tuple[synthetic.Drift, ...], metrics_url: str, duration: float
) -> Group:
    elapsed = time.time() - state.started
    active = synthetic.active_drifts(schedule, elapsed)
    header = Table.grid(padding=(0, 2))
    header.add_row("metrics", metrics_url)
    header.add_row("elapsed", f"{elapsed:5.1f} s of {duration:.0f} s")
    header.add_row("produced", f"{state.produced:,} predictions")
    upcoming = [f"{d.at:.0f}s {d.description}" for d in schedule if d not in active]
    header.add_row("injected", "; ".join(d.description for d in active) or "nothing yet")
    header.add_row("upcoming", "; ".join(upcoming) or "-")
    table = Table(title="closed windows", expand=True)
    for col in ("window", "rows", "drift share", "drifted columns", "quality breaches", "verdict"):
        table.add_column(col)
    for r in sorted(state.reports, key=lambda r: r.window_start)[-12:]:
        drifted = [c.feature for c in (*r.drift.columns, *r.prediction_drift.columns) if c.drifted]
        breaches = [f"{q.feature}:{q.check}" for q in r.quality.breaches]
        verdict = (
            "[red]DRIFT[/]"
            if r.drifted
            else ("[yellow]QUALITY[/]" if r.quality.breached else "[green]ok[/]")
        )
        table.add_row(
            f"+{r.window_start - state.started:5.1f}s",
            f"{r.rows:,}",
            f"{r.drift.share:.2f}",
            ", ".join(drifted) or "-",
            ", ".join(breaches) or "-",
            verdict,
        )
    return Group(Panel(header, title="driftline demo"), table)


async def _demo(
    duration: float,
    rate: int,
    port: int,
    window_seconds: float,
    schedule: tuple[synthetic.Drift, ...],
    console: Console,
    live: bool,
) -> DemoState:
    workdir = Path(tempfile.mkdtemp(prefix="driftline-demo-"))
    try:
        return await _demo_in(
            workdir, duration, rate, port, window_seconds, schedule, console, live
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _demo_in(
    workdir: Path,
    duration: float,
    rate: int,
    port: int,
    window_seconds: float,
    schedule: tuple[synthetic.Drift, ...],
    console: Console,
    live: bool,
) -> DemoState:
    """The demo in ``workdir`` (reference, broker log, agent state), removed afterwards."""
    console.print("building the reference profile from 50,000 synthetic training rows…")
    reference = build_profile(synthetic.reference_frame(50_000), prediction=["prediction"])
    ref_path = reference.save(workdir / "reference.json.gz")
    port = port or free_port()
    with TansuBroker(log_dir=workdir) as broker:
        broker.create_topic(TOPIC, partitions=2)
        console.print(
            f"broker up on {broker.bootstrap}; agent metrics on http://127.0.0.1:{port}/metrics"
        )
        config = demo_config(broker.bootstrap, ref_path, workdir / "state", port, window_seconds)
        state = DemoState()
        agent = Agent(config, profile=reference, sinks=[_ListSink(state)])
        stop_agent = asyncio.Event()
        stop_producer = asyncio.Event()
        agent_task = asyncio.create_task(agent.run(stop_agent))
        producer_task = asyncio.create_task(
            produce(broker.bootstrap, state, rate, duration, schedule, stop_producer)
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        seen = 0
        try:
            if live:
                with Live(
                    render(state, schedule, metrics_url, duration),
                    console=console,
                    refresh_per_second=4,
                ) as view:
                    while not producer_task.done():
                        await asyncio.sleep(0.25)
                        view.update(render(state, schedule, metrics_url, duration))
                    await _settle(state, window_seconds, config.windows.idle_timeout)
                    view.update(render(state, schedule, metrics_url, duration))
            else:
                while not producer_task.done():
                    await asyncio.sleep(0.5)
                    seen = _print_new(console, state, seen)
                await _settle(state, window_seconds, config.windows.idle_timeout)
                _print_new(console, state, seen)
            await producer_task
        finally:
            stop_producer.set()
            stop_agent.set()
            await agent_task
    return state


async def _settle(state: DemoState, window_seconds: float, idle_timeout: float) -> None:
    """Give the last windows time to close (watermark or idle timeout) and be tested."""
    deadline = time.time() + window_seconds + idle_timeout + 5.0
    count = len(state.reports)
    while time.time() < deadline:
        await asyncio.sleep(0.5)
        if len(state.reports) != count:
            count = len(state.reports)
            deadline = max(deadline, time.time() + 2.0)


def _print_new(console: Console, state: DemoState, seen: int) -> int:
    for r in sorted(state.reports, key=lambda r: r.window_start)[seen:]:
        drifted = [c.feature for c in r.drift.columns if c.drifted]
        breaches = [f"{q.feature}:{q.check}" for q in r.quality.breaches]
        console.print(
            f"window +{r.window_start - state.started:5.1f}s rows={r.rows} "
            f"share={r.drift.share:.2f} drifted={drifted or '-'} breaches={breaches or '-'}"
        )
    return len(state.reports)


def _check_port(port: int) -> None:
    """Refuse a taken metrics port up front, naming the flag that changes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(
                f"the demo's metrics port 127.0.0.1:{port} is not free ({exc.strerror}); "
                "choose another with --port N (0: any free port)"
            ) from None


def run_demo(
    duration: float = 90.0,
    rate: int = 2000,
    port: int = 9108,
    window_seconds: float = 5.0,
    schedule: tuple[synthetic.Drift, ...] = synthetic.DEFAULT_SCHEDULE,
    console: Console | None = None,
) -> int:
    """Run the demo; returns 0 when every change injected in the run was found and the
    windows before the first one were clean, 1 otherwise.

    Raises BrokerError without the ``demo`` extra and PortInUseError when ``port`` is
    taken, before anything is built.
    """
    tansu_binary()  # the broker comes with the demo extra: say so before any work
    if port:
        _check_port(port)
    console = console or Console()
    state = play(duration, rate, port, window_seconds, schedule, console)
    return conclude(state, schedule, duration, window_seconds, console)


def play(
    duration: float,
    rate: int,
    port: int,
    window_seconds: float,
    schedule: tuple[synthetic.Drift, ...],
    console: Console,
) -> DemoState:
    """The live part of the demo: broker, model and agent for ``duration`` seconds."""
    logging.getLogger("monitor").setLevel(logging.WARNING)
    return asyncio.run(
        _demo(duration, rate, port, window_seconds, schedule, console, live=console.is_terminal)
    )


def injected(
    schedule: tuple[synthetic.Drift, ...], duration: float, window_seconds: float
) -> tuple[synthetic.Drift, ...]:
    """The changes the run really made: injected at least one window before its end
    (a change injected later cannot fill a window, one after the end never happened)."""
    return tuple(d for d in schedule if d.at + window_seconds <= duration)


def alarm(report: WindowReport) -> bool:
    """Whether a window says anything changed: a verdict, any drifted column (features
    or prediction) or a quality breach."""
    columns = (*report.drift.columns, *report.prediction_drift.columns)
    return report.drifted or any(c.drifted for c in columns) or report.quality.breached


def clean_before(state: DemoState, schedule: tuple[synthetic.Drift, ...]) -> tuple[int, int]:
    """(windows, windows with an alarm) among those that ended before the first change."""
    first = min((d.at for d in schedule), default=float("inf"))
    before = [r for r in state.reports if r.window_end <= state.started + first]
    alarms = [r for r in before if alarm(r)]
    return len(before), len(alarms)


def conclude(
    state: DemoState,
    schedule: tuple[synthetic.Drift, ...],
    duration: float,
    window_seconds: float,
    console: Console,
) -> int:
    """Print what the agent found for each change the run injected; 0 when it found
    every one and raised no alarm before the first, else 1."""
    made = injected(schedule, duration, window_seconds)
    table = Table(title="what the agent found")
    for col in ("injected", "at", "found in window", "after"):
        table.add_column(col)
    ok = True
    for f in findings(state, made):
        if f.window_start is None:
            ok = False
            table.add_row(f.drift.description, f"+{f.drift.at:.0f}s", "[red]not found[/]", "-")
        else:
            end = f.window_end if f.window_end is not None else f.window_start
            table.add_row(
                f.drift.description,
                f"+{f.drift.at:.0f}s",
                f"+{f.window_start - state.started:.0f}s … +{end - state.started:.0f}s",
                f"{f.latency:.1f} s" if f.latency is not None else "-",
            )
    console.print(table)
    skipped = [d for d in schedule if d not in made]
    if skipped:
        console.print(
            f"not injected in a {duration:.0f} s run (each change needs a {window_seconds:g} s "
            "window before the end): " + "; ".join(f"+{d.at:.0f}s {d.description}" for d in skipped)
        )
    before, alarms = clean_before(state, schedule)
    if schedule:
        console.print(
            f"{before} windows before the first change, "
            + (f"[red]{alarms} with a false alarm[/]" if alarms else "all clean")
        )
    ok = ok and alarms == 0
    console.print(f"{len(state.reports)} windows, {state.produced:,} predictions")
    return 0 if ok else 1
