"""What keeping checkpoints in Kafka costs: one checkpoint written to and restored from
the changelog topic on an embedded Tansu broker, against the state directory (the
baseline, fsynced files) in the same run, for window states of several sizes.

``python3 bench/changelog_bench.py [--sizes 0.1,1,8] [--repeat 5]`` prints, per state size
in MB: the median seconds to save and to load each way, and the ratio changelog / directory.
Run it with ``nice`` on a shared machine; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from monitor.config.source import KafkaSourceConfig
from monitor.config.state import StateConfig
from monitor.demo.broker import TansuBroker
from monitor.runtime.changelog import Changelog
from monitor.runtime.checkpoint import Checkpoint, CheckpointStore


def _checkpoint(megabytes: float) -> Checkpoint:
    windows = os.urandom(int(megabytes * 1_000_000))  # incompressible, like sketches
    return Checkpoint({("t", p): 1000 * p for p in range(12)}, windows, "r" * 64, time.time())


async def _changelog(bootstrap: str, cp: Checkpoint, repeat: int) -> tuple[float, float]:
    kafka = KafkaSourceConfig(bootstrap_servers=bootstrap, topics=["t"], group_id="bench")
    log = Changelog(kafka, StateConfig(changelog_topic=f"bench.{time.time_ns()}"), "bench")
    await log.ensure_topic()
    saves, loads = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        await log.save(cp)
        saves.append(time.perf_counter() - start)
        reader = Changelog(kafka, StateConfig(changelog_topic=log.topic), "bench")
        start = time.perf_counter()
        back = await reader.load()
        loads.append(time.perf_counter() - start)
        assert back is not None and back.windows == cp.windows
    await log.close()
    return statistics.median(saves), statistics.median(loads)


def _directory(cp: Checkpoint, repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        store = CheckpointStore(Path(d))
        saves, loads = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            store.save(cp)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            back = store.load()
            loads.append(time.perf_counter() - start)
            assert back is not None and back.windows == cp.windows
    return statistics.median(saves), statistics.median(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0.1,1,8", help="window state sizes in MB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeat}")
    print(
        f"{'state MB':>9} {'dir save s':>11} {'log save s':>11} {'ratio':>6} "
        f"{'dir load s':>11} {'log load s':>11} {'ratio':>6}"
    )
    with TansuBroker(log_dir=Path(tempfile.mkdtemp())) as broker:
        for mb in (float(s) for s in args.sizes.split(",")):
            cp = _checkpoint(mb)
            d_save, d_load = _directory(cp, args.repeat)
            k_save, k_load = asyncio.run(_changelog(broker.bootstrap, cp, args.repeat))
            print(
                f"{mb:>9g} {d_save:>11.4f} {k_save:>11.4f} {k_save / d_save:>6.1f} "
                f"{d_load:>11.4f} {k_load:>11.4f} {k_load / d_load:>6.1f}"
            )


if __name__ == "__main__":
    main()
