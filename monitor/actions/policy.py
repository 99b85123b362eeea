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
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from detectors.results import WindowReport
from monitor.actions import Action
from monitor.actions.audit import AuditLog
from monitor.actions.decision import PENDING, Decision, decision_id
from monitor.actions.factory import build_actions
from monitor.actions.gates import GateVerdict, build_verdict, gate_alerts
from monitor.actions.history import (
    MIN_HISTORY,
    WindowHistory,
    category,
    report_summary,
    streaks,
    window_problems,
)
from monitor.actions.notifications import Alert
from monitor.config.rollback import REPORT_CONDITIONS, PolicyConfig, RollbackSettings

if TYPE_CHECKING:
    from monitor.outputs.exporter import Exporter

__all__ = ["PolicyEngine"]

log = logging.getLogger(__name__)

HOUR = 3600.0


@dataclass
class _Target:
    """A policy's bookkeeping for one version."""

    armed: bool = True
    last_attempt: float | None = None
    last_window: tuple[float, float] | None = None
    firing: dict[str, Alert] = field(default_factory=dict)
    in_flight: int = 0


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
        if category(report.baseline) not in policy.baselines:
            return None
        windows = self.history.windows(model, version)
        latest = windows[-1]
        if latest.key != (report.window_start, report.window_end):
            return None  # a late report of an older window: decide on the newest only
        problems = [window_problems(w, policy.report_conditions, policy.baselines) for w in windows]
        bad, clean = streaks(problems)
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
            id=decision_id(policy.name, model, version, "windows", first.start, first.end),
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
                    _, clean = streaks(self._problems(policy, model, v))
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
            id=decision_id(
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
        with self._lock:
            windows = self.history.windows(model, version)[-gates.windows :]
            firing = sorted(
                name
                for name in gate_alerts(gates)
                if self._firing.get((model, version, name)) or self._firing.get((model, "", name))
            )
        return build_verdict(gates, model, version, windows, firing)

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
