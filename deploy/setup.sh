#!/usr/bin/env bash
# Set up the μ0 trace platform on a fresh Debian 12 machine (root, Python 3.11).
# System packages via apt-get, everything else via pip from this project's pyproject.toml.
# Idempotent: a second run only checks. Usage: bash deploy/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MU0_VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
# libusb: open3d; EGL/GL: MuJoCo offscreen rendering; chromium: browser tests of the Prefect UI
for pkg in libusb-1.0-0 libegl1 libgl1 libegl-mesa0 libgles2 chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.mu0-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install (first time takes about a minute)"
  "$VENV/bin/pip" install -q -U pip
  # torch first and pinned, so nothing else can pull a CUDA build
  "$VENV/bin/pip" install -q "torch==2.13.0"
  "$VENV/bin/pip" install -q -e ".[test]"
  touch "$stamp"
fi
echo "[setup] ready: $VENV"
