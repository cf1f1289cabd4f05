#!/usr/bin/env bash
# Fresh-machine set-up: Java 17 for Spark, then .venv/ with the project installed editable (console script `recsys`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! java -version 2>&1 | grep -qE 'version "17'; then
  echo "setup: Java 17 not found; installing openjdk-17-jre-headless" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: chromium not found; installing Debian's chromium (the web page's browser test drives it)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "setup: Python 3.11 is required (torch 2.13.0+cpu is installed from a cp311 wheel); found $("$PY" --version)" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
# torch==2.13.0 resolves to the local CPU wheel (pip's find-links); any other request pulls several GB of CUDA builds.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -vE '^(WARNING: Location|  )' || true
.venv/bin/python -c 'import pyspark, petastorm, torch, deltalake, mlflow; print(f"setup: ok (pyspark {pyspark.__version__}, torch {torch.__version__})")'
