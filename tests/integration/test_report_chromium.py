"""The HTML report in a real browser: Debian's Chromium, headless, driven over DevTools.

``driftline report`` writes the page of a drifted window (Evidently's section included);
Chromium opens it from disk while a small DevTools client on loopback records every
console message, uncaught exception, browser log entry and network request of the page
(and of any frame attached to it). The test then asks the live DOM for the sections,
waits for Evidently's embedded report to draw, works the "only drifted columns" filter
and takes a screenshot (``report.png`` in the test's tmp directory).

Passes only when nothing went to the console as an error, nothing was thrown, and no
request left the machine: every URL the page asked for is ``file:``, ``data:``,
``about:`` or ``blob:``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from websockets.asyncio.client import ClientConnection, connect

from detectors.profile import build_profile
from detectors.schema import Schema
from detectors.settings import DriftSettings, QualitySettings
from detectors.sketch import WindowSketch
from monitor.cli import main
from monitor.runtime.evaluation import WindowEvaluator
from monitor.runtime.windows import ClosedWindow

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")
T0 = 1_736_935_200.0


def frame(n: int, seed: int, drifted: bool = False) -> pd.DataFrame:
    """A mean shift of ``age``, a new ``country`` and missing ``amount`` when drifted."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40.0 + (10.0 if drifted else 0.0), 10.0, n)
    amount = rng.lognormal(3.0, 1.0, n)
    country = rng.choice(["US", "DE", "FR", "GB"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    if drifted:
        amount[rng.random(n) < 0.3] = np.nan
        country[rng.random(n) < 0.25] = "XX"
    return pd.DataFrame(
        {
            "age": age,
            "amount": amount,
            "country": country,
            "device": rng.choice(["web", "ios", "android"], n),
            "score": 1.0 / (1.0 + np.exp(-(age - 40.0) / 10.0)),
        }
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A drifted window's page written by ``driftline report``; and its column count."""
    d = tmp_path_factory.mktemp("report")
    schema = Schema.build(
        numeric=["age", "amount"], categorical=["country", "device"], prediction_numeric=["score"]
    )
    profile = build_profile(frame(5000, 0), schema, bins=40)
    profile.save(d / "profile.json")
    evaluator = WindowEvaluator(profile, "fraud", DriftSettings(), QualitySettings())
    lines = []
    for i in range(3):
        sketch = WindowSketch(profile, seed=i)
        sketch.update(frame(2000, 10 + i, drifted=i == 2))
        closed = ClosedWindow(
            "v2", T0 + 300 * i, T0 + 300 * (i + 1), sketch, sketch.rows, 0, 0, [], "time"
        )
        (result,) = evaluator.evaluate([closed])
        lines.append(result.report.to_json())
        (d / f"w{i}.sketch").write_bytes(sketch.to_bytes())
    (d / "reports.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = d / "report.html"
    rc = main(
        [
            "report",
            "--reference", str(d / "profile.json"),
            "--reports", str(d / "reports.jsonl"),
            "--sketch", str(d / "w2.sketch"),
            "-o", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    return out, len(schema.columns)


@contextmanager
def chromium(tmp: Path) -> Iterator[str]:
    """Headless Chromium with DevTools on a loopback port; yields the browser's ws URL."""
    assert Path(CHROMIUM).exists(), (
        "Debian's chromium is needed: apt-get install -y --no-install-recommends chromium"
    )
    profile_dir = tmp / "chromium-profile"
    log = (tmp / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile_dir}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,2000",
            "about:blank",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert proc.poll() is None, f"chromium exited: {(tmp / 'chromium.log').read_text()}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        yield f"ws://127.0.0.1:{port}{path}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class DevTools:
    """A minimal Chrome DevTools Protocol client over one websocket (flattened sessions)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            fut = self.pending.pop(msg.get("id", -1), None)
            if fut is not None:
                fut.set_result(msg)
                continue
            self.events.append(msg)
            if msg.get("method") == "Target.attachedToTarget":
                # a frame in its own process: watch it like the page
                task = asyncio.create_task(self.watch(msg["params"]["sessionId"], resume=True))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        ident = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = fut
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def watch(self, session: str, resume: bool = False) -> None:
        for domain in ("Runtime", "Log", "Network", "Page"):
            try:
                await self.send(f"{domain}.enable", session=session)
            except RuntimeError:
                if domain != "Page":  # workers have no Page domain
                    raise
        await self.send(
            "Target.setAutoAttach",
            {"autoAttach": True, "waitForDebuggerOnStart": resume, "flatten": True},
            session=session,
        )
        if resume:
            await self.send("Runtime.runIfWaitingForDebugger", session=session)

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def wait_for(self, session: str, expression: str, timeout: float = 45.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(session, expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            await asyncio.sleep(0.1)

    def problems(self) -> list[str]:
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append(f"exception: {details.get('exception', {}).get('description', details)}")
            elif method == "Runtime.consoleAPICalled" and p["type"] in (
                "error",
                "assert",
                "warning",
            ):
                args = [a.get("value", a.get("description")) for a in p["args"]]
                out.append(f"console.{p['type']}: {args}")
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif method == "Network.loadingFailed":
                out.append(f"failed load: {p.get('errorText')} {p.get('blockedReason', '')}")
        return out

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]


SECTIONS = ("verdict", "summary", "history", "changes", "quality", "features", "evidently")


async def inspect(ws_url: str, url: str, shot: Path) -> dict[str, Any]:
    async with connect(ws_url, max_size=None) as ws:
        tools = DevTools(ws)
        targets = await tools.send("Target.getTargets")
        page = next(t for t in targets["targetInfos"] if t["type"] == "page")
        session = (
            await tools.send(
                "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
            )
        )["sessionId"]
        await tools.watch(session)
        await tools.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 2000, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        await tools.send("Page.navigate", {"url": url}, session=session)
        await tools.wait_for(session, "document.readyState === 'complete'")
        # Evidently draws its dashboard with React inside the frame, after load
        await tools.wait_for(
            session,
            "(() => { const f = document.getElementById('evidently-frame');"
            " const d = f && f.contentDocument;"
            " return !!d && !!d.body && d.body.innerText.includes('Dataset Drift'); })()",
        )
        dom = await tools.evaluate(
            session,
            "(() => ({"
            f" sections: {json.dumps(list(SECTIONS))}.filter(i => document.getElementById(i)),"
            " verdict: document.getElementById('verdict').dataset.verdict,"
            " title: document.title,"
            " headline: document.querySelector('#verdict h1').textContent,"
            " links: [...document.querySelectorAll('nav.toc a')]"
            ".map(a => a.getAttribute('href').slice(1)),"
            " deadLinks: [...document.querySelectorAll('a[href^=\"#\"]')]"
            ".map(a => a.getAttribute('href').slice(1)).filter(i => !document.getElementById(i)),"
            " columns: document.querySelectorAll('article.feature').length,"
            " drifted: document.querySelectorAll('article.feature.drifted').length,"
            " plots: document.querySelectorAll('article.feature svg').length,"
            " quality: document.querySelectorAll('#quality tr[data-check]').length,"
            " frameHeight: document.getElementById('evidently-frame').offsetHeight,"
            " svgWidth: document.querySelector('article.feature svg').clientWidth,"
            "}))()",
        )
        # the filter shows only the drifted columns
        dom["visible_after_filter"] = await tools.evaluate(
            session,
            "(() => { const box = document.getElementById('only-drifted'); box.click();"
            " return [...document.querySelectorAll('article.feature')]"
            ".filter(a => a.offsetParent !== null).length; })()",
        )
        await tools.evaluate(session, "document.getElementById('only-drifted').click()")
        await asyncio.sleep(0.3)
        png = await tools.send(
            "Page.captureScreenshot",
            {"format": "png", "clip": {"x": 0, "y": 0, "width": 1280, "height": 2000, "scale": 1}},
            session=session,
        )
        shot.write_bytes(base64.b64decode(png["data"]))
        dom["problems"] = tools.problems()
        dom["requests"] = tools.requests()
        tools.reader.cancel()
        return dom


def test_report_renders_in_chromium_without_errors(page: tuple[Path, int], tmp_path: Path) -> None:
    html, columns = page
    shot = tmp_path / "report.png"
    with chromium(tmp_path) as ws_url:
        dom = asyncio.run(asyncio.wait_for(inspect(ws_url, html.as_uri(), shot), 120))
    assert dom["problems"] == []
    assert dom["requests"], "the DevTools client saw no request at all"
    assert [u for u in dom["requests"] if not u.startswith(LOCAL_SCHEMES)] == []
    assert html.as_uri() in dom["requests"]
    assert dom["sections"] == list(SECTIONS)
    # every in-page link leads somewhere; the window has no performance, attribution or
    # multivariate block (nor does the profile), so the contents do not offer those
    assert dom["deadLinks"] == []
    assert set(dom["links"]) >= set(SECTIONS) - {"verdict"}
    assert not {"performance", "attribution", "multivariate"} & set(dom["links"])
    # The last window drifted in its features (age, country) and so in its prediction
    # (score follows age), and breached quality (amount missing, country unseen); nothing
    # else was tested. The headline names those three kinds, in the banner and the title.
    last = json.loads((html.parent / "reports.jsonl").read_text().splitlines()[-1])
    assert last["drift"]["drifted"] and last["prediction_drift"]["drifted"]
    assert last["quality"]["breached"] and last.get("multivariate") is None
    headline = "Feature drift, prediction drift and data-quality breach"
    assert dom["verdict"] == "drift" and dom["headline"] == headline
    assert dom["title"] == f"{headline} · fraud v2 · 2025-01-15 10:10:00 UTC – 10:15:00 UTC"
    assert dom["columns"] == columns
    assert 0 < dom["drifted"] < columns
    assert dom["visible_after_filter"] == dom["drifted"]
    assert dom["plots"] >= columns
    assert dom["quality"] > 0
    assert dom["svgWidth"] > 300  # plots are laid out, not collapsed
    assert dom["frameHeight"] > 900  # the frame grew to Evidently's drawn report
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
