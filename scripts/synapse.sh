#!/usr/bin/env bash
# Installs Synapse (PyPI `matrix-synapse`, pinned) into a virtualenv for the
# homeserver integration tests, unless it is already there, and prints the
# virtualenv's path on stdout (progress goes to stderr).
#
#   VESTIBULE_SYNAPSE_VENV="$(scripts/synapse.sh)"
#
# Override the location with VESTIBULE_SYNAPSE_VENV.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
VENV="${VESTIBULE_SYNAPSE_VENV:-$HOME/.cache/vestibule-synapse-venv}"

installed_version() {
  "$VENV/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null || true
}

if [ "$(installed_version)" != "$SYNAPSE_VERSION" ]; then
  echo "installing matrix-synapse==$SYNAPSE_VERSION into $VENV" >&2
  # A fresh virtualenv each time: an old or broken one (e.g. after the
  # system Python changed) is replaced rather than patched.
  python3 -m venv --clear "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION" >&2
  if [ "$(installed_version)" != "$SYNAPSE_VERSION" ]; then
    echo "error: matrix-synapse $SYNAPSE_VERSION did not install into $VENV" >&2
    exit 1
  fi
fi

echo "$VENV"
