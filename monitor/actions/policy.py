"""The policy engine: decides, from window reports and alerts, when to roll a version back.

A policy (``policies`` in monitor.yaml) watches the versions of a model that match its
globs and acts when its conditions hold:

* **window conditions** (``dataset_drift``, ``prediction_drift``, ``quality_breach``)
  are judged on the agent's own window reports. A window is *bad* when any of its
  reports (one per baseline: the reference, and the stable version when
  ``windows.stable_version`` is set; ``baselines`` picks which count) shows one of the
  conditions. The policy triggers when the last ``for_windows`` windows of a version
  are all bad.
* **alert conditions** (``{alert: <alertname>}``) trigger on a firing notification of
  that alert whose ``model``/``model_version`` labels match. An alert without a version
  label targets the versions whose own windows are bad.

**Hysteresis.** After a policy acted on a version it is *disarmed* for it: later bad
windows and alerts are audited as ``already_acted`` and nothing is done. It re-arms once
the version's last ``clear_windows`` windows are all clean (policies with window
conditions) and none of its alerts is still firing. If every action of a decision
failed it re-arms at once, so the next bad window tries again.

**Guards**, checked in this order when a policy triggers:

1. ``stable_version_protected``: the target is the stable version (the policy's
   ``stable_version``, else ``windows.stable_version``) and the stable version's own
   last ``for_windows`` windows are not all bad. A bad canary never rolls back the
   stable version; only a stable version whose own reports are bad can be acted on.
2. ``cooldown``: the policy tried to act on this version less than ``cooldown`` ago.
3. ``rate_limited``: the policy already tried ``max_actions_per_hour`` times in the
   last hour (all versions together).
4. ``dry_run``: the policy is in dry-run mode: everything is decided and recorded, and
   bookkeeping (disarming, cooldown, the hourly count) runs as if it had acted, but no
   action is called.

Otherwise the policy's actions run, in order, in a worker thread (never on the agent's
event loop; each has its own timeouts), and each ends ``acted`` or ``action_failed``.
Every decision is appended to the audit log (one line per action, fsync'd) and counted
in ``driftline_rollback_decisions_total{action, outcome}``; both are written by one
background thread, in order, so the caller never waits on a disk.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from detectors.results import DriftResult, WindowReport
from monitor.actions import Action
from monitor.actions.alerts import Alert
from monitor.actions.audit import AuditLog
from monitor.config.rollback import (
    ALERT_PREFIX,
    REPORT_CONDITIONS,
    ActionConfig,
    PolicyConfig,
    RollbackSettings,
)

if TYPE_CHECKING:
    from monitor.outputs.exporter import Exporter

__all__ = [
    "OUTCOMES",
    "Decision",
    "GateVerdict",
    "PolicyEngine",
    "build_actions",
    "window_problems",
]

log = logging.getLogger(__name__)

OUTCOMES: tuple[str, ...] = (
    "acted",
    "action_failed",
    "dry_run",
    "cooldown",
    "rate_limited",
    "stable_version_protected",
    "already_acted",
    "no_target",
)
PENDING = "pending"
HOUR = 3600.0
# Windows kept per version; enough for any sensible for_windows + clear_windows.
MIN_HISTORY = 64
MAX_VERSIONS = 256


def _category(baseline: str) -> str:
    """A report's baseline as a policy names it: reference or stable."""
    return "reference" if baseline == "reference" else "stable"


# -- windows and what is wrong with them -------------------------------------------------


@dataclass
class Window:
    """One window of one version: its reports, one per baseline."""

    start: float
    end: float
    kind: str
    reports: dict[str, WindowReport] = field(default_factory=dict)

    @property
    def key(self) -> tuple[float, float]:
        return (self.start, self.end)


def _drift_problem(what: str, result: DriftResult, baseline: str) -> str:
    names = [c.feature for c in result.columns if c.drifted]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{what} vs {baseline}: share {result.share:.2f} >= {result.share_threshold:.2f}" + (
        f" ({shown})" if shown else ""
    )


def window_problems(
    window: Window, conditions: Iterable[str], baselines: Iterable[str]
) -> list[str]:
    """Why ``window`` is bad under ``conditions`` (empty: it is clean)."""
    conditions = set(conditions)
    allowed = set(baselines)
    problems: list[str] = []
    for baseline, report in sorted(window.reports.items()):
        if _category(baseline) not in allowed:
            continue
        if "dataset_drift" in conditions and report.drift.drifted:
            problems.append(_drift_problem("dataset drift", report.drift, baseline))
        if "prediction_drift" in conditions and report.prediction_drift.drifted:
            problems.append(_drift_problem("prediction drift", report.prediction_drift, baseline))
        if "quality_breach" in conditions and report.quality.breached:
            checks = [f"{c.feature} {c.check} {c.rate:.3f}" for c in report.quality.breaches]
            checks += [f"missing column {c}" for c in report.quality.missing_columns]
            shown = ", ".join(checks[:5]) + (", ..." if len(checks) > 5 else "")
            problems.append(f"quality breach vs {baseline}: {shown}")
    return problems


def report_summary(report: WindowReport) -> dict[str, Any]:
    """The evidence a report gives: bounds, shares, drifted columns, quality breaches."""

    def drift(result: DriftResult) -> dict[str, Any]:
        return {
            "drifted": result.drifted,
            "share": result.share,
            "share_threshold": result.share_threshold,
            "drifted_count": result.drifted_count,
            "tested_count": result.tested_count,
            "drifted_columns": [
                {
                    "feature": c.feature,
                    "test": c.test,
                    "statistic": c.to_dict()["statistic"],
                    "threshold": c.to_dict()["threshold"],
                }
                for c in result.columns
                if c.drifted
            ],
        }

    return {
        "window": {
            "start": report.window_start,
            "end": report.window_end,
            "kind": report.window_kind,
        },
        "model_version": report.model_version,
        "baseline": report.baseline,
        "reference_hash": report.reference_hash,
        "rows": report.rows,
        "dataset_drift": drift(report.drift),
        "prediction_drift": drift(report.prediction_drift),
        "quality": {
            "breached": report.quality.breached,
            "breaches": [c.to_dict() for c in report.quality.breaches],
            "missing_columns": list(report.quality.missing_columns),
        },
    }


class WindowHistory:
    """The last windows of each (model, version), in window order."""

    def __init__(self, per_version: int = MIN_HISTORY, max_versions: int = MAX_VERSIONS) -> None:
        self.per_version = per_version
        self.max_versions = max_versions
        self._versions: OrderedDict[tuple[str, str], dict[tuple[float, float], Window]] = (
            OrderedDict()
        )

    def add(self, report: WindowReport) -> Window:
        key = (report.model, report.model_version)
        windows = self._versions.get(key)
        if windows is None:
            windows = self._versions[key] = {}
            if len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)
        self._versions.move_to_end(key)
        wkey = (report.window_start, report.window_end)
        window = windows.get(wkey)
        if window is None:
            window = windows[wkey] = Window(
                report.window_start, report.window_end, report.window_kind
            )
            if len(windows) > self.per_version:
                del windows[min(windows, key=lambda k: (k[1], k[0]))]
        window.reports[report.baseline] = report
        return window

    def windows(self, model: str, version: str) -> list[Window]:
        windows = self._versions.get((model, version), {})
        return [windows[k] for k in sorted(windows, key=lambda k: (k[1], k[0]))]

    def versions(self, model: str) -> list[str]:
        return [v for m, v in self._versions if m == model]


def _streaks(problems: Sequence[list[str]]) -> tuple[int, int]:
    """(bad, clean): how many of the last windows in a row are bad, and clean."""
    bad = clean = 0
    for p in reversed(problems):
        if p and not clean:
            bad += 1
        elif not p and not bad:
            clean += 1
        else:
            break
    return bad, clean


# -- decisions -----------------------------------------------------------------------------


@dataclass
class Decision:
    """What a policy concluded about one version, and what came of it."""

    id: str
    policy: str
    model: str
    version: str
    stable_version: str | None
    reason: str
    trigger: dict[str, Any]
    dry_run: bool
    decided_at: float
    actions: tuple[str, ...]
    reports: tuple[dict[str, Any], ...] = ()
    alerts: tuple[Alert, ...] = ()
    outcome: str = PENDING
    # action name -> (outcome, detail)
    results: dict[str, tuple[str, str]] = field(default_factory=dict)

    def evidence(self) -> dict[str, Any]:
        return {
            "reports": list(self.reports),
            "alerts": [a.to_dict() for a in self.alerts],
        }

    def summary(self) -> dict[str, Any]:
        """Short form for HTTP answers."""
        return {
            "decision_id": self.id,
            "policy": self.policy,
            "model": self.model,
            "version": self.version,
            "outcome": self.outcome,
            "reason": self.reason,
            "actions": {
                name: self.results.get(name, (self.outcome, ""))[0] for name in self.actions
            },
        }

    def audit_record(self, action: str, outcome: str, detail: str) -> dict[str, Any]:
        return {
            "ts": time.time(),
            "decision_id": self.id,
            "policy": self.policy,
            "model": self.model,
            "version": self.version,
            "stable_version": self.stable_version,
            "action": action,
            "outcome": outcome,
            "detail": detail,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "decided_at": self.decided_at,
            "trigger": self.trigger,
            "evidence": self.evidence(),
        }


def _decision_id(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass
class _Target:
    """A policy's bookkeeping for one version."""

    armed: bool = True
    last_attempt: float | None = None
    last_window: tuple[float, float] | None = None
    firing: dict[str, Alert] = field(default_factory=dict)
    in_flight: int = 0


@dataclass(frozen=True)
class GateVerdict:
    """What the rollout gates answer about a version."""

    ok: bool
    model: str
    version: str
    windows: int
    reason: str
    problems: tuple[str, ...] = ()
    latest_window: dict[str, Any] | None = None
    firing_alerts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.model,
            "version": self.version,
            "windows": self.windows,
            "reason": self.reason,
            "problems": list(self.problems),
            "latest_window": self.latest_window,
            "firing_alerts": list(self.firing_alerts),
        }


def build_actions(actions: Mapping[str, ActionConfig]) -> dict[str, Action]:
    """The action objects the ``actions`` section describes."""
    from monitor.actions.argo import ArgoAbortAction
    from monitor.actions.kserve import KServeCanaryAction
    from monitor.actions.webhook import WebhookAction

    built: dict[str, Action] = {}
    for name, config in actions.items():
        if config.kind == "webhook":
            built[name] = WebhookAction(name, config)
        elif config.kind == "argo_rollouts":
            built[name] = ArgoAbortAction(name, config)
        else:
            built[name] = KServeCanaryAction(name, config)
    return built


class PolicyEngine:
    """Applies the policies to every report and alert; see the module docstring.

    Thread-safe: the agent's loop calls :meth:`observe_report`, the HTTP server's
    threads call :meth:`observe_alerts` and :meth:`gate_verdict`. ``clock`` is Unix
    seconds (injectable: cooldowns and hourly limits are tested without waiting).
    """

    def __init__(
        self,
        settings: RollbackSettings,
        actions: Mapping[str, Action],
        *,
        exporter: Exporter | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        action_workers: int = 2,
    ) -> None:
        missing = sorted({a for p in settings.policies for a in p.actions} - set(actions))
        if missing:
            raise ValueError(f"policies name actions that do not exist: {missing}")
        self.settings = settings
        self.policies = list(settings.policies)
        self.actions = dict(actions)
        self.exporter = exporter
        self.audit = audit
        self.clock = clock
        longest = max(
            [p.for_windows + p.clear_windows for p in self.policies]
            + [settings.alerts.gates.windows],
            default=0,
        )
        self.history = WindowHistory(per_version=max(MIN_HISTORY, longest + 1))
        self._lock = threading.RLock()
        self._targets: dict[tuple[str, str, str], _Target] = {}
        self._attempts: dict[str, deque[float]] = {p.name: deque() for p in self.policies}
        # (model, version, alertname) -> fingerprint -> alert, for alerts firing now
        self._firing: dict[tuple[str, str, str], dict[str, Alert]] = {}
        self._workers = ThreadPoolExecutor(action_workers, thread_name_prefix="driftline-action")
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="driftline-audit")
        self._pending: set[Future[Any]] = set()
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: Any,
        exporter: Exporter | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> PolicyEngine:
        """The engine a ``MonitorConfig`` (or :class:`RollbackSettings`) describes."""
        settings = RollbackSettings.from_config(config)
        audit = AuditLog(settings.audit_path(), fsync=settings.audit.fsync)
        return cls(
            settings, build_actions(settings.actions), exporter=exporter, audit=audit, clock=clock
        )

    @property
    def default_model(self) -> str:
        return self.settings.model

    # -- inputs ---------------------------------------------------------------------------
    def observe_report(self, report: WindowReport) -> list[Decision]:
        """Take a window report into account; the decisions it caused (their actions run
        in the background). Never raises."""
        try:
            with self._lock:
                self.history.add(report)
                decisions = []
                for policy in self.policies:
                    decision = self._judge_windows(policy, report)
                    if decision is not None:
                        decisions.append(decision)
            return decisions
        except Exception:
            log.exception("the policy engine failed on a window report")
            return []

    def observe_alerts(self, alerts: Iterable[Alert]) -> list[Decision]:
        """Take new alert notifications into account (repeats already removed)."""
        decisions: list[Decision] = []
        labels = self.settings.alerts
        with self._lock:
            for alert in alerts:
                model = alert.labels.get(labels.model_label) or self.default_model
                version = alert.labels.get(labels.version_label) or ""
                key = (model, version, alert.name)
                if alert.firing:
                    self._firing.setdefault(key, {})[alert.fingerprint] = alert
                else:
                    firing = self._firing.get(key, {})
                    firing.pop(alert.fingerprint, None)
                    if not firing:
                        self._firing.pop(key, None)
                for policy in self.policies:
                    if alert.name in policy.alert_names:
                        decisions.extend(self._judge_alert(policy, alert, model, version))
        return decisions

    # -- judging --------------------------------------------------------------------------
    def _target(self, policy: str, model: str, version: str) -> _Target:
        key = (policy, model, version)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target()
        return target

    def _problems(self, policy: PolicyConfig, model: str, version: str) -> list[list[str]]:
        conditions = policy.report_conditions or REPORT_CONDITIONS
        return [
            window_problems(w, conditions, policy.baselines)
            for w in self.history.windows(model, version)
        ]

    def _maybe_rearm(self, policy: PolicyConfig, target: _Target, clean: int) -> None:
        if target.armed or target.firing or target.in_flight:
            return
        if policy.report_conditions and clean < policy.clear_windows:
            return
        target.armed = True
        log.info("policy %s re-armed", policy.name)

    def _judge_windows(self, policy: PolicyConfig, report: WindowReport) -> Decision | None:
        model, version = report.model, report.model_version
        if not policy.report_conditions or not policy.matches(model, version, self.default_model):
            return None
        if _category(report.baseline) not in policy.baselines:
            return None
        windows = self.history.windows(model, version)
        latest = windows[-1]
        if latest.key != (report.window_start, report.window_end):
            return None  # a late report of an older window: decide on the newest only
        problems = [window_problems(w, policy.report_conditions, policy.baselines) for w in windows]
        bad, clean = _streaks(problems)
        target = self._target(policy.name, model, version)
        self._maybe_rearm(policy, target, clean)
        if bad < policy.for_windows or target.last_window == latest.key:
            return None
        target.last_window = latest.key
        first = windows[-bad]
        evidence = windows[-policy.for_windows :]
        reason = (
            f"{bad} window(s) in a row bad (for_windows {policy.for_windows}); latest: "
            + "; ".join(problems[-1])
        )
        decision = Decision(
            id=_decision_id(policy.name, model, version, "windows", first.start, first.end),
            policy=policy.name,
            model=model,
            version=version,
            stable_version=self.settings.policy_stable_version(policy),
            reason=reason,
            trigger={
                "kind": "windows",
                "conditions": list(policy.report_conditions),
                "bad_windows": bad,
                "for_windows": policy.for_windows,
                "since": {"start": first.start, "end": first.end},
            },
            dry_run=policy.dry_run,
            decided_at=self.clock(),
            actions=tuple(policy.actions),
            reports=tuple(
                report_summary(r) for w in evidence for _, r in sorted(w.reports.items())
            ),
        )
        self._decide(policy, target, decision)
        return decision

    def _judge_alert(
        self, policy: PolicyConfig, alert: Alert, model: str, version: str
    ) -> list[Decision]:
        pattern = policy.model if policy.model is not None else self.default_model
        if not fnmatch.fnmatchcase(model, pattern):
            return []
        if version:
            versions = [version] if fnmatch.fnmatchcase(version, policy.versions) else []
        else:
            # no version label: the versions whose own windows are bad now
            versions = [
                v
                for v in self.history.versions(model)
                if fnmatch.fnmatchcase(v, policy.versions)
                and (p := self._problems(policy, model, v))
                and p[-1]
            ]
        if not alert.firing:
            # wherever it was counted as firing (its version's windows may be clean by now)
            for (name, m, v), target in self._targets.items():
                if name == policy.name and m == model and alert.fingerprint in target.firing:
                    del target.firing[alert.fingerprint]
                    _, clean = _streaks(self._problems(policy, model, v))
                    self._maybe_rearm(policy, target, clean)
            return []
        if not versions:
            if version:
                return []  # a version this policy does not watch
            decision = self._alert_decision(policy, alert, model, "")
            decision.reason = (
                f"alert {alert.name} has no {self.settings.alerts.version_label} label and "
                "no version of the model has bad windows; nothing to act on"
            )
            self._record(decision, "no_target")
            return [decision]
        decisions = []
        for v in versions:
            target = self._target(policy.name, model, v)
            target.firing[alert.fingerprint] = alert
            decision = self._alert_decision(policy, alert, model, v)
            self._decide(policy, target, decision)
            decisions.append(decision)
        return decisions

    def _alert_decision(
        self, policy: PolicyConfig, alert: Alert, model: str, version: str
    ) -> Decision:
        windows = self.history.windows(model, version)[-policy.for_windows :] if version else []
        summary = alert.annotations.get("summary", "")
        return Decision(
            id=_decision_id(
                policy.name, model, version, "alert", alert.fingerprint, alert.starts_at
            ),
            policy=policy.name,
            model=model,
            version=version,
            stable_version=self.settings.policy_stable_version(policy),
            reason=f"alert {alert.name} firing since {alert.starts_at}"
            + (f": {summary}" if summary else ""),
            trigger={
                "kind": "alert",
                "alertname": alert.name,
                "fingerprint": alert.fingerprint,
                "startsAt": alert.starts_at,
            },
            dry_run=policy.dry_run,
            decided_at=self.clock(),
            actions=tuple(policy.actions),
            reports=tuple(report_summary(r) for w in windows for _, r in sorted(w.reports.items())),
            alerts=(alert,),
        )

    def _stable_is_bad(self, policy: PolicyConfig, model: str, stable: str) -> bool:
        """Whether the stable version's own last ``for_windows`` windows are all bad."""
        conditions = policy.report_conditions or REPORT_CONDITIONS
        windows = self.history.windows(model, stable)[-policy.for_windows :]
        if len(windows) < policy.for_windows:
            return False
        return all(window_problems(w, conditions, ("reference",)) for w in windows)

    def _decide(self, policy: PolicyConfig, target: _Target, decision: Decision) -> None:
        """Apply the guards, then record or run. Called with the lock held."""
        now = self.clock()
        attempts = self._attempts[policy.name]
        while attempts and now - attempts[0] >= HOUR:
            attempts.popleft()
        stable = decision.stable_version
        if not target.armed:
            outcome = "already_acted"
        elif (
            stable is not None
            and decision.version == stable
            and not self._stable_is_bad(policy, decision.model, stable)
        ):
            outcome = "stable_version_protected"
        elif target.last_attempt is not None and now - target.last_attempt < policy.cooldown:
            outcome = "cooldown"
        elif len(attempts) >= policy.max_actions_per_hour:
            outcome = "rate_limited"
        else:
            target.armed = False
            target.last_attempt = now
            attempts.append(now)
            if policy.dry_run:
                outcome = "dry_run"
            else:
                decision.outcome = PENDING
                target.in_flight += 1
                self._submit(self._workers, self._run, policy, target, decision)
                log.warning(
                    "policy %s acts on %s %s: %s",
                    policy.name,
                    decision.model,
                    decision.version,
                    decision.reason,
                )
                return
        self._record(decision, outcome)

    def _record(self, decision: Decision, outcome: str, detail: str = "") -> None:
        decision.outcome = outcome
        for action in decision.actions:
            decision.results[action] = (outcome, detail)
        records = [(a, outcome, detail) for a in decision.actions]
        self._submit(self._recorder, self._write, decision, records)

    def _run(self, policy: PolicyConfig, target: _Target, decision: Decision) -> None:
        """Run a decision's actions (a worker thread)."""
        results: list[tuple[str, str, str]] = []
        for name in decision.actions:
            try:
                detail = self.actions[name].execute(decision)
                results.append((name, "acted", detail))
                log.warning("action %s: %s", name, detail)
            except Exception as exc:  # an action's failure is recorded, never raised
                results.append((name, "action_failed", f"{type(exc).__name__}: {exc}"))
                log.error(
                    "action %s failed for %s %s: %s", name, decision.model, decision.version, exc
                )
        failed = all(outcome == "action_failed" for _, outcome, _ in results)
        with self._lock:
            target.in_flight -= 1
            if failed:
                target.armed = True  # nothing happened: the next bad window tries again
                target.last_window = None
            decision.outcome = "action_failed" if failed else "acted"
            for name, outcome, detail in results:
                decision.results[name] = (outcome, detail)
        self._submit(self._recorder, self._write, decision, results)

    def _write(self, decision: Decision, records: list[tuple[str, str, str]]) -> None:
        for action, outcome, detail in records:
            if self.audit is not None:
                self.audit.append(decision.audit_record(action, outcome, detail))
            if self.exporter is not None:
                try:
                    self.exporter.count_rollback(decision.version, action, outcome)
                except Exception:
                    log.exception("cannot count a rollback decision")

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        if self._closed:
            fn(*args)
            return
        future = pool.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            log.error("policy engine task failed: %s", exc)

    # -- gates ----------------------------------------------------------------------------
    def gate_verdict(self, model: str, version: str) -> GateVerdict | None:
        """The gates' verdict on ``version`` (None when no window of it was evaluated)."""
        gates = self.settings.alerts.gates
        conditions = [c for c in gates.fail_on if c in REPORT_CONDITIONS]
        alert_names = [c[len(ALERT_PREFIX) :] for c in gates.fail_on if c.startswith(ALERT_PREFIX)]
        with self._lock:
            windows = self.history.windows(model, version)[-gates.windows :]
            firing = sorted(
                name
                for name in alert_names
                if self._firing.get((model, version, name)) or self._firing.get((model, "", name))
            )
        if not windows:
            return None
        problems: list[str] = []
        for w in windows:
            for p in window_problems(w, conditions, gates.baselines):
                problems.append(f"window [{w.start:g}, {w.end:g}): {p}")
        problems += [f"alert {name} is firing" for name in firing]
        latest = windows[-1]
        n = len(windows)
        reason = (
            "; ".join(problems)
            if problems
            else f"no drift or quality breach in the last {n} window(s)"
        )
        return GateVerdict(
            ok=not problems,
            model=model,
            version=version,
            windows=n,
            reason=reason,
            problems=tuple(problems),
            latest_window={
                "start": latest.start,
                "end": latest.end,
                "kind": latest.kind,
                "baselines": sorted(latest.reports),
            },
            firing_alerts=tuple(firing),
        )

    # -- lifecycle ------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until running actions and audit writes are done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = set(self._pending)
            if not pending:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait(pending, timeout=left)

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish what is running (up to ``timeout``) and stop the worker threads."""
        self.flush(timeout)
        self._closed = True
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._recorder.shutdown(wait=True)
