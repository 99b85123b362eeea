"""The init step of an injected pod: write ``monitor.yaml`` and fetch the reference profile.

The injector cannot create ConfigMaps (an admission webhook must not have side effects),
so a configuration built from a pod's annotations travels in the init container's
environment (``DRIFTLINE_MONITOR_YAML``) and is written here into the ``emptyDir`` the
sidecar mounts read-only. A reference profile given as an http(s) URL is downloaded here
too, checked (its SHA-256 when the pod names one, and that it loads as a profile: an
HTML error page is not a profile) and renamed into place, so the agent never starts on
half a file. Failures exit non-zero with the reason, which ``kubectl describe pod`` shows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from monitor.inject.names import MONITOR_YAML_ENV

__all__ = ["PrepareError", "fetch_reference", "prepare", "write_config"]

log = logging.getLogger(__name__)

MAX_REFERENCE_BYTES = 256 << 20


class PrepareError(RuntimeError):
    """The pod's driftline configuration or reference profile could not be set up."""


def write_config(text: str, output_dir: Path) -> Path:
    """Validate ``text`` as monitor.yaml and write it to ``output_dir/monitor.yaml``."""
    from monitor.config.errors import ConfigError
    from monitor.config.loader import parse_config
    from monitor.config.safe_yaml import YAMLLimitError, load_yaml

    try:
        data = load_yaml(text)
    except YAMLLimitError as exc:
        raise PrepareError(f"{MONITOR_YAML_ENV}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise PrepareError(f"{MONITOR_YAML_ENV}: not valid YAML: {exc}") from None
    try:
        parse_config(data, source=MONITOR_YAML_ENV)
    except ConfigError as exc:
        raise PrepareError(str(exc)) from None
    target = output_dir / "monitor.yaml"
    _write_atomic(target, text.encode("utf-8"))
    return target


def fetch_reference(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    timeout: float = 30.0,
    attempts: int = 5,
    max_bytes: int = MAX_REFERENCE_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download the profile at ``url`` to ``target``; transient failures are retried
    with exponential backoff, a wrong checksum or a file that is not a profile is not."""
    from detectors.profile import ProfileError, load_profile

    if urlsplit(url).scheme not in ("http", "https"):
        raise PrepareError(f"{url}: only http(s) URLs are fetched")
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(min(2.0**attempt, 30.0))
        try:
            data = _download(url, timeout, max_bytes)
            break
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code < 500 and exc.code != 429:
                raise PrepareError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
        log.warning("reference download attempt %d of %d failed: %s", attempt + 1, attempts, last)
    else:
        raise PrepareError(f"{url}: download failed after {attempts} attempts: {last}")
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.lower():
            raise PrepareError(f"{url}: SHA-256 is {digest}, the pod expects {sha256.lower()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=target.name, delete=False) as fh:
        fh.write(data)
        staged = Path(fh.name)
    try:
        load_profile(staged)
    except ProfileError as exc:
        staged.unlink(missing_ok=True)
        raise PrepareError(f"{url}: {exc}") from None
    os.chmod(staged, 0o644)
    os.replace(staged, target)
    return target


def prepare(
    output_dir: Path,
    *,
    reference_url: str | None = None,
    reference_file: Path | None = None,
    reference_sha256: str | None = None,
    environ: dict[str, str] | None = None,
) -> list[Path]:
    """Everything the init container does; returns the files written."""
    env = os.environ if environ is None else environ
    text = env.get(MONITOR_YAML_ENV)
    if not text:
        raise PrepareError(f"{MONITOR_YAML_ENV} is not set; the injector sets it")
    written = [write_config(text, output_dir)]
    if reference_url is not None:
        target = reference_file or output_dir / "reference.json.gz"
        written.append(fetch_reference(reference_url, target, sha256=reference_sha256))
    return written


def _download(url: str, timeout: float, max_bytes: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "driftline-init"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PrepareError(f"{url}: larger than {max_bytes} bytes")
    return data


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as fh:
        fh.write(data)
        staged = Path(fh.name)
    os.chmod(staged, 0o644)
    os.replace(staged, target)
