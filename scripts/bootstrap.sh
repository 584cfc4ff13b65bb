# Sourced by scripts/demo and scripts/test: a virtualenv in .venv holding the project
# and its test tools, built on first use and brought up to date on every run; with it the
# test suite's plug-in store, a distribution of its own found by its entry point.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' \
    -e tests/plugin_store
