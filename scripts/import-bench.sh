#!/usr/bin/env bash
# Times `vestibule manage import-users` on a generated file of N users (default
# 10 000: email, display name, upstream link, one attribute), twice: the
# first run creates them, the second finds them all unchanged. A measurement,
# not a test.
#
#   scripts/import-bench.sh [sqlite|postgres] [N] [debug|release]
#
# PostgreSQL: a scratch database `vestibule_import_bench` is (re)created at
# $VESTIBULE_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
export PGOPTIONS="-c client_min_messages=warning"

engine=${1:-sqlite}
n=${2:-10000}
profile=${3:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/vestibule-target}
provider=01JAYS74TCG3BTWKADN5Q4518C

if [ "$profile" = release ]; then
  cargo build --manifest-path "$root/Cargo.toml" --release -p vestibule-cli
else
  cargo build --manifest-path "$root/Cargo.toml" -p vestibule-cli
fi
bin="$target/$profile/vestibule"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
case "$engine" in
  sqlite) url="sqlite://$dir/bench.db" ;;
  postgres)
    base=${VESTIBULE_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
    psql "$base/postgres" -qc 'DROP DATABASE IF EXISTS vestibule_import_bench'
    psql "$base/postgres" -qc 'CREATE DATABASE vestibule_import_bench'
    url="$base/vestibule_import_bench"
    ;;
  *) echo "usage: $0 [sqlite|postgres] [N] [debug|release]" >&2; exit 2 ;;
esac

"$bin" config generate -o "$dir/gen.yaml" >/dev/null
cat > "$dir/overlay.yaml" <<YAML
database:
  uri: "$url"
upstream_oauth2:
  providers:
    - id: "$provider"
      issuer: "https://idp.example.org/"
      human_name: Bench IdP
      client_id: vestibule
      scope: openid
YAML
awk -v n="$n" -v p="$provider" 'BEGIN {
  print "localpart,email,displayname,provider_id,subject,tenant_id"
  for (i = 0; i < n; i++)
    printf "user%06d,user%06d@example.org,User %d,%s,sub-%d,tenant-%d\n", i, i, i, p, i, i % 7
}' > "$dir/users.csv"

cfg=(-c "$dir/gen.yaml" -c "$dir/overlay.yaml")
"$bin" "${cfg[@]}" database migrate >/dev/null 2>&1
for run in first second; do
  start=$(date +%s.%N)
  "$bin" "${cfg[@]}" manage import-users "$dir/users.csv" > "$dir/out" 2> "$dir/err" \
    || { cat "$dir/err" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%s %s, %s run: %.1f s — %s\n' "$engine" "$profile" "$run" \
    "$(echo "$end - $start" | bc)" "$(tail -1 "$dir/out")"
done
if [ "$engine" = postgres ]; then
  psql "$base/postgres" -qc 'DROP DATABASE vestibule_import_bench'
fi
