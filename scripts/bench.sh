#!/usr/bin/env bash
# Benchmark (not a test): builds a release binary and prints requests/s and
# latency percentiles for discovery, introspection, code exchange and full
# password login. BENCH_ENGINE=postgres to run on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vestibule-target}"
export VESTIBULE_TEST_POSTGRES_URL="${VESTIBULE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release --locked --bin vestibule
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
VESTIBULE_BIN="$CARGO_TARGET_DIR/release/vestibule" node tests/e2e/bench.mjs
