#!/usr/bin/env bash
# Stylus developer entry point. Sets up .venv from requirements.txt (again only when the file
# changes), then:
#   bash dev.sh app   [args]   start the web app (embedded preview model unless STYLUS_MODEL is set)
#   bash dev.sh test  [args]   run the whole test suite (pytest args pass through)
#   bash dev.sh cli   [args]   python -m stylus_ui [args]
set -euo pipefail
cd "$(dirname "$0")"
VENV=${STYLUS_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local want have
  want=$(cat requirements.txt | sha256sum | cut -d' ' -f1)
  have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    echo "dev.sh: installing requirements into $VENV (first run: 1-2 minutes)" >&2
    # old pip backtracks into a source build on this dependency set: upgrade it first
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
    echo "$want" > "$VENV/.requirements.sha256"
  fi
}

browser() {
  # Browser tests drive Debian's Chromium (Playwright's own download does not work offline).
  if [ -z "${STYLUS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    echo "dev.sh: installing chromium for the browser tests" >&2
    $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq chromium >/dev/null \
      || echo "dev.sh: chromium could not be installed; browser tests will be skipped" >&2
  fi
}

export GRADIO_ANALYTICS_ENABLED=False LITELLM_LOCAL_MODEL_COST_MAP=True ANONYMIZED_TELEMETRY=False
cmd=${1:-}
shift || true
case "$cmd" in
  app)
    setup
    exec "$VENV/bin/python" app.py "$@" ;;
  test)
    setup
    browser
    export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
    exec "$VENV/bin/python" -m pytest "$@" ;;
  cli)
    setup
    exec "$VENV/bin/python" -m stylus_ui "$@" ;;
  *)
    echo "usage: bash dev.sh app|test|cli [args]" >&2
    exit 2 ;;
esac
