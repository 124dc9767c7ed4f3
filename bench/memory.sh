#!/usr/bin/env bash
# Memory per cached identity: the server's resident set (VmRSS) before and after N distinct
# cold exchanges, with the minted-token reuse cache off and on, in-process cache only.
#   bench/memory.sh [N...]            default: 100000 200000 (cumulative steps of one run)
#   BENCH_WARMUP=n                   distinct exchanges before the first reading (default 20000)
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=dir bench/memory.sh   uses the binaries already in dir/release
# Prints, per setting and step, ΔRSS / identities, where identities is what the fake upstream
# was asked (one introspection per distinct token), and the slope between the two steps,
# which leaves out what does not grow with the number of identities.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
if [ $# -gt 0 ]; then STEPS=("$@"); else STEPS=(100000 200000); fi
CONNECTIONS=${BENCH_CONNECTIONS:-32}
APP_PORT=18180
IDP_PORT=18181
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

ensure_command wrk wrk
TARGET=${CARGO_TARGET_DIR:-/work/rtarget}
[ -n "${BENCH_NO_BUILD:-}" ] ||
  CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --bin token-exchange --example fake_idp
# A private copy: a build in another checkout sharing the target dir cannot swap it mid-run.
cp "$TARGET/release/token-exchange" "$TARGET/release/examples/fake_idp" "$WORK/"
BIN=$WORK/token-exchange
bench_client "$BIN"
LAST=${STEPS[${#STEPS[@]}-1]}

config() { # reuse_minted
  cat <<TOML
[server]
listen = "127.0.0.1:$APP_PORT"
[storage]
database_url = "sqlite://$WORK/memory-$1.db"
[tokens]
reuse_minted = $1
[cache]
# Room for every identity of the run: this measures what one costs, not eviction.
max_entries = $(( LAST * 2 + 100000 ))
${BENCH_MAX_BYTES:+max_bytes = $BENCH_MAX_BYTES}
[rate_limits]
first_sight_per_client = "off"
$(idp_and_client_toml "$IDP_PORT")
TOML
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
exchange() { # identities tag: short wrk runs until the upstream was asked about that many new tokens
  local target=$(( $(introspections "$IDP_PORT") + $1 )) chunk=0
  while [ "$(introspections "$IDP_PORT")" -lt "$target" ]; do
    chunk=$(( chunk + 1 ))
    BENCH_COLD_TAG="mem-$2-$chunk-" wrk -t1 -c"$CONNECTIONS" -d"${BENCH_CHUNK_SECONDS:-2}s" -s bench/cold.lua \
      "http://127.0.0.1:$APP_PORT/token" >"$WORK/wrk.log"
    ! grep -q 'Non-2xx' "$WORK/wrk.log" || { echo "non-2xx answers:" >&2; cat "$WORK/wrk.log" >&2; exit 1; }
  done
  sleep 2 # let the caches' pending writes and housekeeping settle
}

"$WORK/fake_idp" "127.0.0.1:$IDP_PORT" >/dev/null 2>&1 &
printf '%s, %s cores, %s connections\n' "$(date -u +%F)" "$(nproc)" "$CONNECTIONS"
printf '%-13s %10s %10s %12s %14s\n' reuse_minted identities rss_kib bytes/identity slope_bytes/id
for reuse in false true; do
  config "$reuse" >"$WORK/memory-$reuse.toml"
  RUST_LOG=warn $BIN serve --config "$WORK/memory-$reuse.toml" >"$WORK/server-$reuse.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$APP_PORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$IDP_PORT/stats" >/dev/null && break
    sleep 0.1
  done
  # Warm up first: worker threads, connection pools and allocator arenas are not per identity.
  exchange "${BENCH_WARMUP:-20000}" "warm-$reuse"
  base_rss=$(rss_kib "$server"); base_calls=$(introspections "$IDP_PORT")
  printf '%-13s %10s %10s %12s %14s\n' "$reuse" 0 "$base_rss" - -
  done_so_far=0; prev_rss=$base_rss; prev_n=0
  for step in "${STEPS[@]}"; do
    exchange $(( step - done_so_far )) "step$step-$reuse"
    done_so_far=$step
    rss=$(rss_kib "$server"); n=$(( $(introspections "$IDP_PORT") - base_calls ))
    printf '%-13s %10s %10s %12s %14s\n' "$reuse" "$n" "$rss" \
      "$(awk -v d=$(( rss - base_rss )) -v n="$n" 'BEGIN { printf "%.0f", d * 1024 / n }')" \
      "$(awk -v d=$(( rss - prev_rss )) -v n=$(( n - prev_n )) 'BEGIN { printf "%.0f", d * 1024 / n }')"
    prev_rss=$rss; prev_n=$n
  done
  kill "$server"; wait "$server" 2>/dev/null || true
done
