#!/usr/bin/env bash
# Stylus developer entry point. Sets up .venv from requirements.txt (again only when the file
# changes; tests, and the app or CLI with STYLUS_WORKERS set, also requirements-workers.txt: Ray), then:
#   bash dev.sh app   [args]   start the web app (embedded preview model unless STYLUS_MODEL is set)
#   bash dev.sh test  [args]   run the whole test suite (pytest args pass through)
#   bash dev.sh cli   [args]   python -m stylus_ui [args]
set -euo pipefail
cd "$(dirname "$0")"
VENV=${STYLUS_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
  # setup FILE...: install the requirement files (all together: one resolution) when any of them
  # changed since the last install; each file's hash is kept in $VENV/.<name>.sha256
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local f changed=0 args=()
  for f in "$@"; do
    args+=(-r "$f")
    [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$(cat "$VENV/.$(basename "$f" .txt).sha256" 2>/dev/null || true)" ] \
      || changed=1
  done
  if [ "$changed" = 1 ]; then
    echo "dev.sh: installing $* into $VENV (first run: 1-2 minutes)" >&2
    # old pip backtracks into a source build on this dependency set: upgrade it first
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"
    for f in "$@"; do
      sha256sum < "$f" | cut -d' ' -f1 > "$VENV/.$(basename "$f" .txt).sha256"
    done
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
REQUIREMENTS=(requirements.txt)
[ -z "${STYLUS_WORKERS:-}" ] || REQUIREMENTS+=(requirements-workers.txt)  # the Ray Serve worker pool
cmd=${1:-}
shift || true
case "$cmd" in
  app)
    setup "${REQUIREMENTS[@]}"
    exec "$VENV/bin/python" app.py "$@" ;;
  test)
    setup requirements.txt requirements-workers.txt  # the worker pool tests start a local Ray cluster
    browser
    export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
    exec "$VENV/bin/python" -m pytest "$@" ;;
  cli)
    setup "${REQUIREMENTS[@]}"
    exec "$VENV/bin/python" -m stylus_ui "$@" ;;
  *)
    echo "usage: bash dev.sh app|test|cli [args]" >&2
    exit 2 ;;
esac
