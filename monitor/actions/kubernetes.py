"""A minimal Kubernetes API client: enough to PATCH a custom resource, nothing more.

The actions need two calls (abort an Argo Rollout, zero a KServe canary), which does
not justify the ``kubernetes`` package and its dependencies. This client speaks plain
HTTPS with the standard library and authenticates the two ways a pod or an operator
does:

* **in cluster**: the service account's bearer token from
  ``/var/run/secrets/kubernetes.io/serviceaccount/token`` (re-read for every request:
  projected tokens rotate), the cluster CA next to it, and the API server at
  ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``;
* **kubeconfig** (``$KUBECONFIG`` or ``~/.kube/config``, or a path): the context's
  cluster ``server``, ``certificate-authority``/``-data`` or
  ``insecure-skip-tls-verify``, and the user's ``token``, ``tokenFile`` or client
  certificate (``client-certificate``/``-data`` + ``client-key``/``-data``). ``exec``
  and ``auth-provider`` plugins are not supported: use a token or a certificate.

Requests that fail with 5xx, 429 or a connection error are retried with backoff; any
other status is returned to the caller, which knows what a 404 means for it.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from monitor.actions import ActionError, HTTPReply, Retry, http_request
from monitor.config.rollback import ActionConfig, KubernetesConfig

__all__ = [
    "MERGE_PATCH",
    "KubeConfigError",
    "KubernetesClient",
    "KubernetesPatchAction",
    "status_message",
]

MERGE_PATCH = "application/merge-patch+json"
SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"


class KubeConfigError(ActionError):
    """The client cannot be set up (no credentials, unreadable kubeconfig)."""


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KubeConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _ssl_context(
    *,
    ca_file: Path | None = None,
    ca_data: bytes | None = None,
    insecure: bool = False,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    cert_data: bytes | None = None,
    key_data: bytes | None = None,
) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None,
            cadata=ca_data.decode() if ca_data is not None else None,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise KubeConfigError(f"cannot load the cluster CA: {exc}") from None
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_data is not None or key_data is not None:
        # load_cert_chain reads files: write the inline PEMs to private temporary ones
        with tempfile.TemporaryDirectory(prefix="driftline-kube-") as tmp:
            cert_path, key_path = Path(tmp, "client.crt"), Path(tmp, "client.key")
            for path, data in ((cert_path, cert_data), (key_path, key_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data or b"")
            _load_chain(context, cert_path, key_path)
    elif cert_file is not None:
        _load_chain(context, cert_file, key_file)
    return context


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load the client certificate: {exc}") from None


class KubernetesClient:
    """Requests to one API server with one identity.

    ``token`` is called for every request (None: no Authorization header, e.g. with a
    client certificate).
    """

    def __init__(
        self,
        server: str,
        *,
        token: Callable[[], str | None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        retry: Retry | None = None,
        source: str = "",
    ) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.retry = retry or Retry(retries=2, backoff=0.5, max_backoff=5.0)
        self.source = source  # where the credentials came from, for messages

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: KubernetesConfig,
        *,
        env: Mapping[str, str] | None = None,
        retry: Retry | None = None,
    ) -> KubernetesClient:
        """A client set up as ``config`` says (see :class:`KubernetesConfig`)."""
        env = os.environ if env is None else env
        mode = config.mode
        if mode == "auto":
            in_cluster = config.token_file.is_file() and (
                bool(env.get(SERVICE_HOST_ENV)) or config.server is not None
            )
            mode = "in_cluster" if in_cluster else "kubeconfig"
        if mode == "in_cluster":
            return cls.in_cluster(config, env=env, retry=retry)
        path = config.kubeconfig
        if path is None:
            first = (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
            path = Path(first) if first else Path.home() / ".kube" / "config"
        return cls.from_kubeconfig(
            path, context=config.context, timeout=config.timeout, server=config.server, retry=retry
        )

    @classmethod
    def in_cluster(
        cls,
        config: KubernetesConfig,
        *,
        env: Mapping[str, str] | None = None,
        retry: Retry | None = None,
    ) -> KubernetesClient:
        env = os.environ if env is None else env
        server = config.server
        if server is None:
            host, port = env.get(SERVICE_HOST_ENV), env.get(SERVICE_PORT_ENV, "443")
            if not host:
                raise KubeConfigError(
                    f"not running in a cluster ({SERVICE_HOST_ENV} is not set); set "
                    "kubernetes.mode: kubeconfig or kubernetes.server"
                )
            host = f"[{host}]" if ":" in host else host
            server = f"https://{host}:{port}"
        token_file = config.token_file
        _read_text(token_file, "service account token")  # fail early when it is missing
        context = None
        if server.startswith("https://"):
            context = _ssl_context(ca_file=config.ca_file)
        return cls(
            server,
            token=lambda: _read_text(token_file, "service account token"),
            ssl_context=context,
            timeout=config.timeout,
            retry=retry,
            source=f"service account token {token_file}",
        )

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path,
        *,
        context: str | None = None,
        timeout: float = 10.0,
        server: str | None = None,
        retry: Retry | None = None,
    ) -> KubernetesClient:
        path = Path(path).expanduser()
        try:
            doc = yaml.safe_load(_read_text(path, "kubeconfig")) or {}
        except yaml.YAMLError as exc:
            raise KubeConfigError(f"the kubeconfig {path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise KubeConfigError(f"the kubeconfig {path} is not a mapping")
        name = context or doc.get("current-context")
        if not name:
            raise KubeConfigError(f"the kubeconfig {path} has no current-context; set context")
        ctx = _named(doc, "contexts", name, "context", path)
        cluster = _named(doc, "clusters", ctx.get("cluster"), "cluster", path)
        user = _named(doc, "users", ctx.get("user"), "user", path) if ctx.get("user") else {}
        if user.get("exec") or user.get("auth-provider"):
            raise KubeConfigError(
                f"the kubeconfig user {ctx.get('user')!r} uses an exec or auth-provider "
                "plugin, which driftline does not run; give it a token, a tokenFile or a "
                "client certificate"
            )
        base = path.parent
        server = server or cluster.get("server")
        if not server:
            raise KubeConfigError(f"cluster {ctx.get('cluster')!r} in {path} has no server")

        def rel(value: str | None) -> Path | None:
            if not value:
                return None
            p = Path(value).expanduser()
            return p if p.is_absolute() else base / p

        def data(key: str) -> bytes | None:
            value = cluster.get(key) if key.startswith("certificate-authority") else user.get(key)
            if not value:
                return None
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise KubeConfigError(f"{key} in {path} is not base64") from None

        ssl_context = None
        if server.startswith("https://"):
            ssl_context = _ssl_context(
                ca_file=rel(cluster.get("certificate-authority")),
                ca_data=data("certificate-authority-data"),
                insecure=bool(cluster.get("insecure-skip-tls-verify")),
                cert_file=rel(user.get("client-certificate")),
                key_file=rel(user.get("client-key")),
                cert_data=data("client-certificate-data"),
                key_data=data("client-key-data"),
            )
        token: Callable[[], str | None] | None = None
        if user.get("token"):
            static = str(user["token"])
            token = lambda: static  # noqa: E731
        elif user.get("tokenFile"):
            token_path = rel(user["tokenFile"])
            assert token_path is not None
            token = lambda: _read_text(token_path, "token file")  # noqa: E731
        return cls(
            server,
            token=token,
            ssl_context=ssl_context,
            timeout=timeout,
            retry=retry,
            source=f"kubeconfig {path} context {name}",
        )

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> HTTPReply:
        """``method path`` against the API server; 5xx/429/connection errors are retried
        and raise :class:`ActionError` when attempts run out; other statuses return."""
        url = self.server + path

        def attempt(n: int) -> HTTPReply:
            headers = {"Accept": "application/json", "User-Agent": "driftline"}
            token = self._token() if self._token is not None else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if content_type is not None:
                headers["Content-Type"] = content_type
            reply = http_request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=self.timeout,
                ssl_context=self.ssl_context,
            )
            if reply.status >= 500 or reply.status == 429:
                raise ActionError(
                    f"{method} {path} answered {reply.status}: {status_message(reply)}",
                    retryable=True,
                    status=reply.status,
                )
            return reply

        return self.retry.run(attempt)

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> HTTPReply:
        """A JSON merge patch (RFC 7386), what ``kubectl patch --type merge`` sends."""
        return self.request("PATCH", path, body=orjson.dumps(patch), content_type=MERGE_PATCH)


def status_message(reply: HTTPReply) -> str:
    """The ``message`` of a Kubernetes ``Status`` reply, else the start of the body."""
    try:
        doc = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return reply.text()
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return doc["message"]
    return reply.text()


class KubernetesPatchAction:
    """The part every action that patches a resource shares: its config and its client.

    A subclass sets ``kind`` (the ``kind`` of its action config) and writes ``execute``.
    """

    kind: str

    def __init__(
        self, name: str, config: ActionConfig, client: KubernetesClient | None = None
    ) -> None:
        if config.kind != self.kind or config.namespace is None:
            article = "an" if self.kind[0] in "aeiou" else "a"
            raise ValueError(f"action {name}: not {article} {self.kind} action")
        self.name = name
        self.config = config
        self.namespace = config.namespace
        self._client = client

    def client(self) -> KubernetesClient:
        # built on first use: missing credentials fail the action, not the agent's start
        if self._client is None:
            self._client = KubernetesClient.from_config(self.config.kubernetes)
        return self._client


def _named(doc: dict[str, Any], section: str, name: Any, key: str, path: Path) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(key) or {}
            if not isinstance(value, dict):
                break
            return value
    raise KubeConfigError(f"the kubeconfig {path} has no {key} named {name!r}")
