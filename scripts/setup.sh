#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv in .venv, the Python packages, the system
# graphviz (circuit drawings), poppler (PDF checks) and chromium (the viewer's browser
# test, headless), the package itself
# (editable), and the offline SmolLM2-135M checkpoint in data/models/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dot >/dev/null || ! command -v pdftotext >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq graphviz poppler-utils chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq graphviz poppler-utils chromium >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PY=.venv/bin/python
$PY -m pip install -q --upgrade pip
$PY -m pip install -q torch==2.13.0
$PY -m pip install -q -r requirements.txt
$PY -m pip install -q -e . --no-deps
$PY -m edge_pruning.smollm2
echo "setup done: activate with '. .venv/bin/activate'"
