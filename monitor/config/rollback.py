"""The ``alerts``, ``policies``, ``actions`` and ``audit`` sections of ``monitor.yaml``.

They say when the agent acts on what it sees (a policy), what it does then (an action),
who may talk to it (the Alertmanager receiver and the rollout gates) and where every
decision is written down (the audit log)::

    alerts:
      token_env: DRIFTLINE_TOKEN          # bearer token of /v1/alerts and the gates
    policies:
      - name: abort-drifting-canary
        versions: "v*"
        when: [dataset_drift, quality_breach, {alert: DriftlinePredictionDrift}]
        for_windows: 3
        clear_windows: 2
        cooldown: 10m
        max_actions_per_hour: 2
        actions: [abort-rollout, notify]
    actions:
      abort-rollout: {kind: argo_rollouts, namespace: ml, rollout: "{model}"}
      notify: {kind: webhook, url: "https://hooks.example/rollback", secret_env: HOOK_SECRET}

The models follow the rules of every section (``monitor.config.rules``: unknown keys are
errors, durations are "500ms", "60s", "5m", "1h" or seconds, secrets are named by
environment variable), so ``ConfigError`` names e.g. ``actions.notify.url``. They live
with the other sections, not in ``monitor.actions``, so that the configuration never
imports the code that acts on it. Checks that span sections (a policy naming an action
that does not exist) are in :func:`rollback_problems`.
"""

from __future__ import annotations

import fnmatch
import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitor.config.durations import DURATION_HINT
from monitor.config.rules import Duration, Section, bad_value, env_name, fail
from monitor.redaction import redact_url

# What a window was compared with: the reference (training data) or the stable version.
Baseline = Literal["reference", "stable"]
_ALL_BASELINES: tuple[Baseline, ...] = ("reference", "stable")

__all__ = [
    "REPORT_CONDITIONS",
    "ActionConfig",
    "AlertsConfig",
    "AuditConfig",
    "GatesConfig",
    "KubernetesConfig",
    "PolicyConfig",
    "RollbackSettings",
    "alert_condition",
    "rollback_problems",
]

# What a window report can show; a policy's `when` lists some of these and/or alerts.
REPORT_CONDITIONS: tuple[str, ...] = (
    "dataset_drift",
    "prediction_drift",
    "quality_breach",
    # a sequential detector (a column's or the dataset's) fired in the window
    "sequential_drift",
    # a label-free performance estimate (CBPE, DLE) beyond its reference threshold
    "performance_estimated_drop",
    # a realized performance metric beyond the same threshold (docs/performance.md)
    "performance_realized_drop",
)
# What a gate fails on unless alerts.gates.fail_on says otherwise.
GATE_CONDITIONS: tuple[str, ...] = ("dataset_drift", "prediction_drift", "quality_breach")
ALERT_PREFIX = "alert:"
ACTION_KINDS: tuple[str, ...] = ("webhook", "argo_rollouts", "kserve")
TEMPLATE_FIELDS = frozenset({"model", "version"})

# A DNS-1123 subdomain, what Kubernetes accepts as a namespace or object name.
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


EnvName = Annotated[str | None, BeforeValidator(env_name("DRIFTLINE_TOKEN"))]


def alert_condition(alertname: str) -> str:
    """The ``when`` entry for an alert, as stored: ``alert:<alertname>``."""
    return ALERT_PREFIX + alertname


def _conditions(value: object) -> list[str]:
    """``when`` as written (one item or a list; each a report condition, ``{alert: X}``
    or ``alert:X``) → the normalised list of strings."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    hint = (
        f"use {', '.join(REPORT_CONDITIONS)} or {{alert: <alertname>}}, "
        "e.g. [dataset_drift, {alert: DriftlinePredictionDrift}]"
    )
    for item in items:
        if isinstance(item, dict):
            if set(item) != {"alert"} or not isinstance(item["alert"], str) or not item["alert"]:
                raise bad_value(f"{item!r} is not a condition; {hint}")
            out.append(alert_condition(item["alert"]))
        elif isinstance(item, str) and (
            item in REPORT_CONDITIONS or (item.startswith(ALERT_PREFIX) and len(item) > 6)
        ):
            out.append(item)
        else:
            raise bad_value(f"{item!r} is not a condition; {hint}")
    if not out:
        raise bad_value(f"is empty; {hint}")
    return list(dict.fromkeys(out))


def _check_template(value: str, key: str) -> None:
    """A name template may only use ``{model}`` and ``{version}``."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError:
        raise fail(key, f'{value!r} is not a name template; write e.g. "{{model}}"') from None
    unknown = sorted(fields - TEMPLATE_FIELDS)
    if unknown:
        raise fail(
            key,
            f"{value!r} uses {unknown}; a name template may only use {{model}} and {{version}}",
        )


# -- receiver and gates -------------------------------------------------------------------


class GatesConfig(Section):
    """``alerts.gates``: the Argo Rollouts and Flagger gate endpoints."""

    enabled: bool = True
    # bearer: the same token as /v1/alerts (or token_env's); none: no authentication
    # (only behind a NetworkPolicy that lets the rollout controller in and nobody else).
    auth: Literal["bearer", "none"] = "bearer"
    token_env: EnvName = None  # default: alerts.token_env
    # The last `windows` windows of the version are judged; any bad one fails the gate.
    windows: int = Field(1, ge=1, le=100)
    fail_on: list[str] = Field(default_factory=lambda: list(GATE_CONDITIONS))
    # Which comparisons count: reference (training data), stable (the stable version's
    # window, with windows.stable_version), or both.
    baselines: list[Baseline] = Field(default_factory=lambda: list(_ALL_BASELINES))

    @field_validator("fail_on", mode="before")
    @classmethod
    def _fail_on(cls, value: object) -> object:
        return _conditions(value)

    @field_validator("baselines", mode="before")
    @classmethod
    def _one_baseline(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> GatesConfig:
        if not self.baselines:
            raise fail("baselines", "is empty; use [reference], [stable] or both")
        return self


class AlertsConfig(Section):
    """``alerts``: the Alertmanager webhook receiver ``POST /v1/alerts``."""

    enabled: bool = True
    token_env: EnvName = "DRIFTLINE_TOKEN"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # Notifications remembered to answer repeats idempotently (fingerprint, status,
    # startsAt, endsAt of each alert); the oldest are forgotten first.
    remember: int = Field(10_000, ge=1)
    # The alert labels that name the model and its version (the metric labels).
    model_label: str = "model"
    version_label: str = "model_version"
    gates: GatesConfig = Field(default_factory=GatesConfig)

    @model_validator(mode="after")
    def _check(self) -> AlertsConfig:
        if self.enabled and not self.token_env:
            raise fail(
                "token_env",
                "is required: /v1/alerts needs a bearer token; name the environment variable "
                "that holds it, e.g. DRIFTLINE_TOKEN (or set enabled: false)",
            )
        gates = self.gates
        if gates.enabled and gates.auth == "bearer" and not (gates.token_env or self.token_env):
            raise fail(
                "gates.token_env",
                "is required with auth: bearer when alerts.token_env is not set; name the "
                "variable holding the gates' token, or set gates.auth: none",
            )
        if not self.model_label or not self.version_label:
            raise fail("model_label", "label names may not be empty")
        return self

    def gate_token_env(self) -> str | None:
        """The variable holding the gates' token (None when gates are open)."""
        if self.gates.auth == "none":
            return None
        return self.gates.token_env or self.token_env


# -- policies ------------------------------------------------------------------------------


class PolicyConfig(Section):
    """One ``policies`` entry: when to act on which model versions, and how."""

    name: str
    model: str | None = None  # glob; default: the agent's model
    versions: str = "*"  # glob over model_version
    when: list[str]
    for_windows: int = Field(3, ge=1, le=1000)
    clear_windows: int = Field(2, ge=1, le=1000)
    cooldown: Duration = 600.0
    max_actions_per_hour: int = Field(2, ge=1)
    dry_run: bool = False
    stable_version: str | None = None  # default: windows.stable_version
    baselines: list[Baseline] = Field(default_factory=lambda: list(_ALL_BASELINES))
    actions: list[str]

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: object) -> object:
        return _conditions(value)

    @field_validator("actions", "baselines", mode="before")
    @classmethod
    def _one_item(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        if not self.name.strip():
            raise fail("name", "is empty; name the policy, e.g. abort-drifting-canary")
        if not self.actions:
            raise fail("actions", "is empty; list the names of actions (the actions section)")
        if not self.baselines:
            raise fail("baselines", "is empty; use [reference], [stable] or both")
        if self.model is not None and not self.model.strip():
            raise fail("model", "is empty; remove it (the agent's model) or write a glob")
        return self

    @property
    def report_conditions(self) -> tuple[str, ...]:
        return tuple(c for c in self.when if c in REPORT_CONDITIONS)

    @property
    def alert_names(self) -> tuple[str, ...]:
        return tuple(c[len(ALERT_PREFIX) :] for c in self.when if c.startswith(ALERT_PREFIX))

    def matches(self, model: str, version: str, default_model: str) -> bool:
        """Whether this policy watches ``version`` of ``model`` (globs, case-sensitive)."""
        pattern = self.model if self.model is not None else default_model
        return fnmatch.fnmatchcase(model, pattern) and fnmatch.fnmatchcase(version, self.versions)


# -- actions -------------------------------------------------------------------------------


class KubernetesConfig(Section):
    """How an action reaches the Kubernetes API.

    ``auto`` uses the pod's service account when running in a cluster (the token file
    exists and ``KUBERNETES_SERVICE_HOST`` is set), else the kubeconfig.
    """

    mode: Literal["auto", "in_cluster", "kubeconfig"] = "auto"
    kubeconfig: Path | None = None  # default: $KUBECONFIG, then ~/.kube/config
    context: str | None = None  # default: the kubeconfig's current-context
    # In-cluster: the service account's token (re-read on every request, it rotates),
    # its CA, and the API server (default https://$KUBERNETES_SERVICE_HOST:$..._PORT).
    token_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    ca_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
    server: str | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _check(self) -> KubernetesConfig:
        if self.server is not None and not re.match(r"^https?://[^/\s]+", self.server):
            raise fail("server", "is not an http(s) URL; write e.g. https://10.0.0.1:443")
        if self.timeout <= 0:
            raise fail("timeout", f"must be longer than 0; {DURATION_HINT}")
        return self


_KIND_FIELDS: dict[str, frozenset[str]] = {
    "webhook": frozenset({"url", "secret_env", "headers"}),
    "argo_rollouts": frozenset({"namespace", "rollout", "kubernetes"}),
    "kserve": frozenset({"namespace", "inference_service", "component", "kubernetes"}),
}
_COMMON_FIELDS = frozenset({"kind", "timeout", "retries", "backoff", "max_backoff"})


class ActionConfig(Section):
    """One ``actions`` entry; ``kind`` says which of the other keys apply.

    * ``webhook``: POST a signed JSON description of the decision to ``url``.
    * ``argo_rollouts``: abort the Rollout ``rollout`` in ``namespace``.
    * ``kserve``: set the InferenceService's ``canaryTrafficPercent`` to 0.

    ``rollout`` and ``inference_service`` are templates over ``{model}`` and
    ``{version}``.
    """

    kind: Literal["webhook", "argo_rollouts", "kserve"]
    timeout: Duration = 5.0  # per HTTP attempt
    retries: int = Field(3, ge=0, le=10)  # extra attempts on 5xx and connection errors
    backoff: Duration = 0.5  # first retry's delay cap; doubles per attempt (full jitter)
    max_backoff: Duration = 10.0
    # webhook
    url: str | None = None
    secret_env: EnvName = None
    headers: dict[str, str] = Field(default_factory=dict)
    # argo_rollouts / kserve
    namespace: str | None = None
    rollout: str | None = None
    inference_service: str | None = None
    component: Literal["predictor"] = "predictor"
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)

    @model_validator(mode="after")
    def _check(self) -> ActionConfig:
        allowed = _KIND_FIELDS[self.kind] | _COMMON_FIELDS
        for name in sorted(self.model_fields_set - allowed):
            field = type(self).model_fields[name]
            if getattr(self, name) == field.get_default(call_default_factory=True):
                continue  # written as its default (an effective config printed back)
            users = [k for k, fields in _KIND_FIELDS.items() if name in fields]
            raise fail(
                name,
                f"is not used by kind {self.kind} (it is for {' or '.join(users)}); remove it",
            )
        if self.timeout <= 0:
            raise fail("timeout", f"must be longer than 0; {DURATION_HINT}")
        if self.kind == "webhook":
            if not self.url:
                raise fail("url", "is required for kind webhook; write the receiver's URL")
            if not re.match(r"^https?://[^/\s]+", self.url):
                raise fail("url", f"{redact_url(self.url)!r} is not an http(s) URL")
            if not self.secret_env:
                raise fail(
                    "secret_env",
                    "is required for kind webhook: requests are signed; name the "
                    "environment variable holding the signing secret, e.g. DRIFTLINE_HOOK_SECRET",
                )
            for header in self.headers:
                if header.lower().startswith("x-driftline-") or header.lower() in (
                    "content-type",
                    "content-length",
                ):
                    raise fail(f"headers.{header}", "is set by driftline; remove it")
        else:
            if not self.namespace or not _K8S_NAME.match(self.namespace):
                raise fail(
                    "namespace",
                    f"is required for kind {self.kind}: the Kubernetes namespace, e.g. ml",
                )
            key = "rollout" if self.kind == "argo_rollouts" else "inference_service"
            value = getattr(self, key)
            if not value:
                raise fail(key, f'is required for kind {self.kind}; write e.g. "{{model}}"')
            _check_template(value, key)
        return self

    def target_name(self, model: str, version: str) -> str:
        """The Rollout's or InferenceService's name for this model and version."""
        template = self.rollout if self.kind == "argo_rollouts" else self.inference_service
        assert template is not None  # checked on validation
        return template.format(model=model, version=version)

    def secret(self) -> bytes | None:
        """The webhook signing secret from the environment (None when the variable is
        unset or empty); never logged."""
        if not self.secret_env:
            return None
        value = os.environ.get(self.secret_env, "").strip()  # as signing.py keys it
        return value.encode() if value else None

    def resolve_paths(self, base: Path) -> None:
        k = self.kubernetes
        for attr in ("kubeconfig", "token_file", "ca_file"):
            value = getattr(k, attr)
            if attr not in k.model_fields_set or value is None:
                continue
            value = value.expanduser()
            setattr(k, attr, value if value.is_absolute() else base / value)


class AuditConfig(Section):
    """``audit``: the JSON-lines log of every decision (default ``<state.dir>/decisions.jsonl``)."""

    path: Path | None = None
    fsync: bool = True

    def resolve_paths(self, base: Path) -> None:
        if self.path is not None and not self.path.is_absolute():
            self.path = base / self.path


# -- across sections -----------------------------------------------------------------------


def rollback_problems(
    policies: list[PolicyConfig], actions: dict[str, ActionConfig]
) -> list[tuple[str, str]]:
    """Problems that span sections, as ``(dotted key, message with the fix)``."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, policy in enumerate(policies):
        if policy.name in seen:
            problems.append(
                (f"policies[{i}].name", f"{policy.name!r} is used twice; name each policy once")
            )
        seen.add(policy.name)
        for name in policy.actions:
            if name not in actions:
                known = ", ".join(sorted(actions)) or "none is defined"
                problems.append(
                    (
                        f"policies[{i}].actions",
                        f"{name!r} is not an action; define it under actions (known: {known})",
                    )
                )
    for name in actions:
        if not name or not re.match(r"^[A-Za-z0-9_.\-]+$", name):
            problems.append(
                (f"actions.{name}", "use letters, digits, '-', '_' or '.' in action names")
            )
    return problems


class RollbackSettings(Section):
    """Everything the policy engine and its endpoints read, in one value.

    Built from a ``MonitorConfig`` with :meth:`from_config`, or validated directly (tests,
    tools). ``model`` is the agent's model (the default of a policy's ``model``);
    ``stable_version`` is ``windows.stable_version``; ``state_dir`` holds the default
    audit log.
    """

    model: str
    stable_version: str | None = None
    state_dir: Path = Path("./state")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    policies: list[PolicyConfig] = Field(default_factory=list)
    actions: dict[str, ActionConfig] = Field(default_factory=dict)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @model_validator(mode="after")
    def _check(self) -> RollbackSettings:
        problems = rollback_problems(self.policies, self.actions)
        if problems:
            raise fail(*problems[0])
        return self

    @classmethod
    def from_config(cls, config: Any) -> RollbackSettings:
        """The settings of a ``MonitorConfig`` (or of a value that is already one)."""
        if isinstance(config, RollbackSettings):
            return config
        windows = getattr(config, "windows", None)
        state = getattr(config, "state", None)
        return cls(
            model=config.model,
            stable_version=getattr(windows, "stable_version", None),
            state_dir=getattr(state, "dir", Path("./state")),
            alerts=getattr(config, "alerts", None) or AlertsConfig(),
            policies=list(getattr(config, "policies", None) or []),
            actions=dict(getattr(config, "actions", None) or {}),
            audit=getattr(config, "audit", None) or AuditConfig(),
        )

    def audit_path(self) -> Path:
        if self.audit.path is not None:
            return self.audit.path
        return self.state_dir / "decisions.jsonl"

    def policy_stable_version(self, policy: PolicyConfig) -> str | None:
        return policy.stable_version if policy.stable_version is not None else self.stable_version
