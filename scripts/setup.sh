#!/usr/bin/env bash
# Fresh-machine set-up: Java 17 for Spark, then .venv/ with the project installed editable (console script `recsys`).
#   bash scripts/setup.sh           what the main job needs
#   bash scripts/setup.sh --tests   also the test extra, Debian's chromium (the web page's browser test drives it)
#                                   and Petastorm's environment (the shard readers' parity test)
#   bash scripts/setup.sh --petastorm   .venv-petastorm/: Petastorm 0.12.1 on pyarrow 14 (requirements/petastorm.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=0; PETASTORM=0
for arg in "$@"; do
  case "$arg" in
    --tests) TESTS=1; PETASTORM=1 ;;
    --petastorm) PETASTORM=1 ;;
    *) echo "usage: bash scripts/setup.sh [--tests] [--petastorm]" >&2; exit 2 ;;
  esac
done
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! java -version 2>&1 | grep -qE 'version "17'; then
  echo "setup: Java 17 not found; installing openjdk-17-jre-headless" >&2
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

# Spark MLlib's ALS solves a small linear system per user and item with BLAS/LAPACK; without a native library it
# logs "Failed to load implementation" and runs Java code, slower until the JIT has warmed up (docs/BENCHMARKS.md).
if ! ldconfig -p 2>/dev/null | grep -q 'liblapack\.so\.3 '; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: no native BLAS/LAPACK for Spark's ALS; installing libopenblas0-pthread" >&2
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null; } ||
      echo "setup: could not install libopenblas0-pthread: Spark's ALS will use its slower Java code" >&2
  else
    echo "setup: no native BLAS/LAPACK (libblas.so.3, liblapack.so.3) found: Spark's ALS will use its slower Java code" >&2
  fi
fi

if [ "$TESTS" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: chromium not found; installing Debian's chromium (the web page's browser test drives it)" >&2
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

# Python 3.11 or 3.12, as pyproject.toml says (docs/PINS.md); 3.11 first: torch 2.13.0+cpu is a local cp311 wheel.
in_range='import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)'
PY=""
for candidate in ${PYTHON:-python3.11 python3.12 python3}; do
  if "$candidate" -c "$in_range" >/dev/null 2>&1; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "setup: Python 3.11 or 3.12 is required (pyproject.toml); none of: ${PYTHON:-python3.11 python3.12 python3}" >&2
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "setup: $("$PY" --version): torch and the other pins come from the package index (local wheels: cp311)" >&2
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
TARGET="."; [ "$TESTS" = 1 ] && TARGET=".[test]"
# torch==2.13.0 resolves to the local CPU wheel (pip's find-links); any other request pulls several GB of CUDA builds.
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$TARGET" 2>&1 | grep -vE '^(WARNING: Location|  )' || true
if [ "$PETASTORM" = 1 ]; then
  # Its own venv: Petastorm needs pyarrow < 15 and numpy 1, the main one has pyarrow 26 and numpy 2 (docs/PINS.md).
  # The pinned closure is fetched in parallel (each lookup on the package index takes seconds), then installed
  # offline with --no-deps: the file lists every package `from petastorm import make_batch_reader` imports.
  [ -x .venv-petastorm/bin/python ] || "$PY" -m venv .venv-petastorm
  WHEELS=$(mktemp -d)
  grep -vE '^(#|$)' requirements/petastorm.txt | xargs -P 8 -I{} .venv-petastorm/bin/python -m pip download -q \
    --disable-pip-version-check --no-deps --only-binary=:all: -d "$WHEELS" {} 2>&1 | grep -v '^WARNING: Location' || true
  .venv-petastorm/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-index "$WHEELS"/*.whl \
    2>&1 | grep -v '^WARNING: Location' || true
  rm -rf "$WHEELS"
  if ! .venv-petastorm/bin/python -c 'import petastorm, pyarrow; print(f"setup: .venv-petastorm ok (petastorm {petastorm.__version__}, pyarrow {pyarrow.__version__})")' 2>/dev/null; then
    echo "setup: .venv-petastorm is incomplete: a wheel of requirements/petastorm.txt could not be fetched from the package index (see the pip lines above); run the set-up again when it is reachable" >&2
    exit 1
  fi
fi
.venv/bin/python -c 'import pyspark, torch, deltalake, mlflow; print(f"setup: ok (pyspark {pyspark.__version__}, torch {torch.__version__})")'
