#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the storage
# conformance suite on SQLite and PostgreSQL, HTTP tests through the
# production router, homeserver tests against real Synapse, end-to-end tests
# of the `vestibule` binary, and third-party clients (openid-client, headless
# Chromium) against a running server. Installs what it needs: Synapse in a
# venv, npm packages (tests/e2e), Debian's chromium.
#
# PostgreSQL is required (127.0.0.1:5432, trust auth, user postgres by
# default; override with VESTIBULE_TEST_POSTGRES_URL). A missing PostgreSQL
# fails the run: it is never silently skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# A persistent target directory outside the clone keeps rebuilds incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vestibule-target}"
export VESTIBULE_TEST_POSTGRES_URL="${VESTIBULE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export VESTIBULE_REQUIRE_POSTGRES=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "PostgreSQL at ${VESTIBULE_TEST_POSTGRES_URL%%\?*}"
if ! pg_isready -q -d "$VESTIBULE_TEST_POSTGRES_URL" 2>/dev/null; then
  # The machines start PostgreSQL before a session; if it stopped, try to
  # start it the way the machine does, then insist.
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
    for _ in $(seq 1 20); do pg_isready -q -d "$VESTIBULE_TEST_POSTGRES_URL" && break; sleep 0.5; done
  fi
fi
if ! pg_isready -q -d "$VESTIBULE_TEST_POSTGRES_URL" 2>/dev/null; then
  echo "error: PostgreSQL is not reachable at $VESTIBULE_TEST_POSTGRES_URL; the storage suite must run on it" >&2
  exit 1
fi
# Databases left behind by interrupted earlier runs.
psql -X -q -t -A -d "$VESTIBULE_TEST_POSTGRES_URL" \
  -c "SELECT datname FROM pg_database WHERE datname LIKE 'vestibule\_test\_%'" 2>/dev/null |
  while read -r db; do
    [ -n "$db" ] && psql -X -q -d "$VESTIBULE_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  done

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Synapse for the homeserver tests (matrix-synapse in a virtualenv)"
# Installed once into a cached virtualenv; the homeserver tests start it
# themselves. Required here: a missing Synapse fails the run.
VESTIBULE_SYNAPSE_VENV="$(scripts/synapse.sh)"
export VESTIBULE_SYNAPSE_VENV
export VESTIBULE_REQUIRE_SYNAPSE=1
echo "$VESTIBULE_SYNAPSE_VENV"

step "nginx, openssl and Chromium for the end-to-end tests"
# nginx is the reverse proxy in front of Synapse and vestibule (and terminates
# TLS with a test CA made by openssl in crates/e2e-matrix-sdk); Debian's
# Chromium drives the browser tests (test tools never download their own
# browser here).
if ! command -v chromium >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium nginx openssl
  # The package starts a system nginx on port 80; the tests run their own.
  (service nginx stop || true) >/dev/null 2>&1
fi

step "npm packages (tests/e2e): the upstream IdP (oidc-provider) of the Rust tests, the Node clients"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

step "cargo test (unit, conformance on SQLite + PostgreSQL, HTTP, real Synapse, end-to-end)"
# crates/e2e-matrix-sdk runs the `vestibule` binary itself (matrix-rust-sdk
# through Synapse, vestibule behind nginx over https, on SQLite and
# PostgreSQL); it is built first and passed in.
cargo build --locked --bin vestibule
export VESTIBULE_BIN="$CARGO_TARGET_DIR/debug/vestibule"
# cargo-nextest (on this kind of machine) runs each test in its own process
# and kills one that hangs (.config/nextest.toml); plain cargo test otherwise.
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "end-to-end: third-party clients against a running vestibule (openid-client, headless Chromium)"
cargo build --locked --bin vestibule
# A test that hangs (a peer that never answers) fails after 10 minutes
# instead of holding CI until its own limit.
VESTIBULE_BIN="$CARGO_TARGET_DIR/debug/vestibule" VESTIBULE_ARTIFACTS="$PWD/artifacts" \
  node --test --test-concurrency=1 --test-timeout=600000 tests/e2e/

step "config schema drift"
cargo run -q -p xtask --locked -- schema --check

echo
echo "All tests passed."
