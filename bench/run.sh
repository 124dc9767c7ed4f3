#!/usr/bin/env bash
# Benchmark: cache-hit exchanges against a bare endpoint of the same server, and cold
# exchanges with Redis as L2 against cold exchanges with the in-process cache alone and
# against the fake upstream's own rate and its rate through a bare nginx proxy (the ceiling of
# anything that makes one upstream call per request here), and three replicas on one Redis
# sharing one upstream call per token, all measured in one run.
#   bench/run.sh [seconds-per-phase] [connections]
#   BENCH_REUSE_MINTED=false bench/run.sh   signs every token (no minted-token reuse)
#   BENCH_COLD_ROUNDS=n bench/run.sh   rounds of the two cold phases, alternating (default 3)
#   BENCH_FLEET_TOKENS=n bench/run.sh   distinct tokens of the three-replica phase (2000 per second of a phase)
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=dir bench/run.sh   runs the binaries already in dir/release
#   BENCH_PROFILE=1 bench/run.sh   also profiles the service during the first (c) with perf and prints a
#                                  flame graph in text (bench/flame.py); the phase runs slower
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${1:-10}
CONNECTIONS=${2:-64}
APP_PORT=18080
IDP_PORT=18081
LOCAL_PORT=18086
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

ensure_command wrk wrk
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; NGINX=/usr/sbin/nginx; }
ensure_command redis-server redis-server
# A Redis of the run's own: an empty keyspace that no other client scans or blocks (a shared
# one answers KEYS and SCANs of tests in between, long enough to time our calls out), and
# nothing left behind.
# A free port: a Redis of the run just before may still be on its way out of a fixed one.
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done

[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --quiet --bin token-exchange --example fake_idp
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/token-exchange
bench_client "$BIN"

cat > "$WORK/bench.toml" <<TOML
[server]
listen = "127.0.0.1:$APP_PORT"
[storage]
database_url = "sqlite://$WORK/bench.db"
[tokens]
reuse_minted = ${BENCH_REUSE_MINTED:-true}
[cache]
redis_url = "redis://127.0.0.1:$REDIS_PORT"
redis_prefix = "te-bench-$$"
[rate_limits]
# Phase (c) presents a token never seen before on every request, on purpose.
first_sight_per_client = "off"
$(idp_and_client_toml "$IDP_PORT")
[[forward_auth.routes]]
name = "orders"
path_prefix = "/api/orders"
client = "bench"
audience = "orders"
TOML

# A binary from before the first-sight budget (BENCH_NO_BUILD with an older build) knows no
# such key; it asks the upstream about every new token anyway.
$BIN check-config --config "$WORK/bench.toml" >/dev/null 2>&1 ||
  sed -i -e '/^\[rate_limits\]/d' -e '/^first_sight_per_client/d' "$WORK/bench.toml"

# The same service with the in-process cache alone, for the cold phase without Redis.
sed -e "s#^listen = .*#listen = \"127.0.0.1:$LOCAL_PORT\"#" -e '/^redis_/d' -e "s#bench.db#local.db#" \
  "$WORK/bench.toml" > "$WORK/local.toml"

$TARGET/release/examples/fake_idp "127.0.0.1:$IDP_PORT" >/dev/null 2>&1 &
RUST_LOG=warn $BIN serve --config "$WORK/bench.toml" >"$WORK/server.log" 2>&1 &
APP_PID=$!
RUST_LOG=warn $BIN serve --config "$WORK/local.toml" >"$WORK/local.log" 2>&1 &
LOCAL_PID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$APP_PORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$LOCAL_PORT/healthz" >/dev/null &&
    curl -sf "http://127.0.0.1:$IDP_PORT/stats" >/dev/null && break
  sleep 0.1
done

# nginx in front of an echo backend, once directly and once asking us first (the example).
GATEWAY_PORT=18082; BACKEND_PORT=18083; DIRECT_PORT=18084; CACHED_PORT=18085; PROXY_PORT=18087
render() {
  sed -e "s#{{AUTH_PORT}}#$APP_PORT#g; s#{{BACKEND_PORT}}#$BACKEND_PORT#g; s#{{LISTEN_PORT}}#$GATEWAY_PORT#g" \
      -e "s#{{IDP_PORT}}#$IDP_PORT#g; s#{{PROXY_PORT}}#$PROXY_PORT#g" \
      -e "s#{{CACHED_LISTEN_PORT}}#$CACHED_PORT#g; s#{{CACHE_DIR}}#$2/cache#g; s#{{DIRECT_PORT}}#$DIRECT_PORT#g" \
      -e "s#^\(\s*\)access_log /dev/stdout;#\1access_log off;#" "$1" > "$2/nginx.conf"
}
# And nginx as a bare proxy to the fake upstream, the ceiling of the cold phases.
for site in echo gateway proxy; do mkdir -p "$WORK/$site"; done
render bench/nginx-echo.conf "$WORK/echo"
render examples/nginx/nginx.conf "$WORK/gateway"
render bench/nginx-proxy.conf "$WORK/proxy"
for site in echo gateway proxy; do
  "$NGINX" -p "$WORK/$site" -e "$WORK/$site/error.log" -c "$WORK/$site/nginx.conf" -g "daemon off; pid $WORK/$site/nginx.pid;" &
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
load() { wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" | summarize; }

# Warm the in-process and Redis caches with the one hot token.
curl -sf -X POST "http://127.0.0.1:$APP_PORT/token" -H "Authorization: $BENCH_BASIC" \
  -d "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token=hot-token-0123456789abcdef&subject_token_type=urn:ietf:params:oauth:token-type:access_token&audience=orders" >/dev/null

read -r base_rate base_p50 base_p99 base_err < <(load "http://127.0.0.1:$APP_PORT/healthz")
before=$(introspections "$IDP_PORT")
read -r hit_rate hit_p50 hit_p99 hit_err < <(load -s bench/exchange.lua "http://127.0.0.1:$APP_PORT/token")
hit_calls=$(( $(introspections "$IDP_PORT") - before ))
before=$(introspections "$IDP_PORT")
read -r fa_rate fa_p50 fa_p99 fa_err < <(load -s bench/forward_auth.lua "http://127.0.0.1:$APP_PORT/forward-auth")
fa_calls=$(( $(introspections "$IDP_PORT") - before ))
# Redis commands of every kind so far, to count what one cold exchange sends.
redis_calls() { redis-cli -p "$REDIS_PORT" INFO commandstats | awk -F'[:=,]' '/^cmdstat_/ { n += $3 } END { print n + 0 }'; }
redis_pings() { redis-cli -p "$REDIS_PORT" INFO commandstats | awk -F'[:=,]' '/^cmdstat_ping:/ { n = $3 } END { print n + 0 }'; }
read -r idp_rate idp_p50 idp_p99 idp_err < <(load -s bench/introspect.lua "http://127.0.0.1:$IDP_PORT/introspect")
# CPU time of a process (utime + stime, in clock ticks), and per upstream call in µs: what a
# miss costs, whatever share of the shared cores the process got.
cpu_per_miss() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }
# The two cold phases alternate over BENCH_COLD_ROUNDS rounds ((l) then (c), then (c) then
# (l), ...), and the ratio reported is the median of the rounds' ratios: on a shared 2-core VM one
# pair of phases varies by ±0.15 from run to run. Rates, CPU and Redis commands are over all rounds.
COLD_ROUNDS=${BENCH_COLD_ROUNDS:-3}
local_rates=(); cold_rates=()
local_calls=0; local_cpu=0; cold_calls=0; app_cpu=0; redis_cpu=0; redis_sent=0; pings_sent=0
cold_local() {
  local before cpu rate p50 p99 err
  before=$(introspections "$IDP_PORT"); cpu=$(cpu_ticks "$LOCAL_PID")
  read -r rate p50 p99 err < <(BENCH_COLD_TAG="local-$1-" load -s bench/cold.lua "http://127.0.0.1:$LOCAL_PORT/token")
  local_calls=$(( local_calls + $(introspections "$IDP_PORT") - before ))
  local_cpu=$(( local_cpu + $(cpu_ticks "$LOCAL_PID") - cpu ))
  local_rates+=("$rate"); local_p50=$p50; local_p99=$p99; local_err=$(( ${local_err:-0} + err ))
}
cold_redis() {
  local before cpu rcpu sent pings rate p50 p99 err
  before=$(introspections "$IDP_PORT"); sent=$(redis_calls); pings=$(redis_pings)
  cpu=$(cpu_ticks "$APP_PID"); rcpu=$(cpu_ticks "$REDIS_PID")
  if [ -n "${BENCH_PROFILE:-}" ] && [ "$1" = 1 ]; then
    command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
    perf record -q -F 499 --call-graph dwarf,16384 -p "$APP_PID" -o "$WORK/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
  read -r rate p50 p99 err < <(BENCH_COLD_TAG="redis-$1-" load -s bench/cold.lua "http://127.0.0.1:$APP_PORT/token")
  [ -z "${PERF_PID:-}" ] || { wait "$PERF_PID" || true; PERF_PID=; }
  cold_calls=$(( cold_calls + $(introspections "$IDP_PORT") - before ))
  app_cpu=$(( app_cpu + $(cpu_ticks "$APP_PID") - cpu )); redis_cpu=$(( redis_cpu + $(cpu_ticks "$REDIS_PID") - rcpu ))
  redis_sent=$(( redis_sent + $(redis_calls) - sent )); pings_sent=$(( pings_sent + $(redis_pings) - pings ))
  cold_rates+=("$rate"); cold_p50=$p50; cold_p99=$p99; cold_err=$(( ${cold_err:-0} + err ))
}
# (p), the ceiling: the fake upstream through nginx and nothing else, in every round as well.
proxy_rates=()
ceiling_proxy() {
  local rate p50 p99 err
  read -r rate p50 p99 err < <(load -s bench/introspect.lua "http://127.0.0.1:$PROXY_PORT/introspect")
  proxy_rates+=("$rate"); proxy_p50=$p50; proxy_p99=$p99; proxy_err=$(( ${proxy_err:-0} + err ))
}
for round in $(seq 1 "$COLD_ROUNDS"); do
  if (( round % 2 )); then ceiling_proxy; cold_local "$round"; cold_redis "$round"
  else cold_redis "$round"; cold_local "$round"; ceiling_proxy; fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# The ratio of two phases' rates in each round, in round order: per_round a_rates b_rates.
per_round() { local -n a=$1 b=$2; local i; for i in "${!a[@]}"; do ratio "${a[$i]}" "${b[$i]}"; echo; done; }
mapfile -t round_ratios < <(per_round cold_rates local_rates)
mapfile -t cold_ceiling < <(per_round cold_rates proxy_rates)
mapfile -t local_ceiling < <(per_round local_rates proxy_rates)
local_rate=$(median "${local_rates[@]}"); cold_rate=$(median "${cold_rates[@]}")
cold_ratio=$(median "${round_ratios[@]}")
proxy_rate=$(median "${proxy_rates[@]}")
local_us=$(cpu_per_miss "$local_cpu" "$local_calls")
cold_us=$(cpu_per_miss "$app_cpu" "$cold_calls")
redis_us=$(cpu_per_miss "$redis_cpu" "$cold_calls")
redis_per_miss=$(awk -v c="$redis_sent" -v n="$cold_calls" 'BEGIN { printf "%.2f", (n > 0 ? c / n : 0) }')
pings_per_miss=$(awk -v c="$pings_sent" -v n="$cold_calls" 'BEGIN { printf "%.2f", (n > 0 ? c / n : 0) }')
read -r direct_rate direct_p50 direct_p99 direct_err < <(load "http://127.0.0.1:$DIRECT_PORT/api/orders/42")
read -r gw_rate gw_p50 gw_p99 gw_err < <(load -s bench/gateway.lua "http://127.0.0.1:$GATEWAY_PORT/api/orders/42")

# Three replicas on one Redis (one prefix; each its own SQLite key store), one wrk per replica
# over the same list of tokens at the same time: the fleet's single flight should leave one
# upstream call per distinct token, however the misses of one token fall on the replicas.
FLEET_PORTS=(18091 18092 18093)
FLEET_TOKENS=${BENCH_FLEET_TOKENS:-$(( 2000 * DURATION ))}
for replica in 0 1 2; do
  sed -e "s#^listen = .*#listen = \"127.0.0.1:${FLEET_PORTS[$replica]}\"#" -e "s#^redis_prefix = .*#redis_prefix = \"te-fleet-$$\"#" \
    -e "s#bench.db#fleet-$replica.db#" "$WORK/bench.toml" > "$WORK/fleet-$replica.toml"
  RUST_LOG=warn $BIN serve --config "$WORK/fleet-$replica.toml" >"$WORK/fleet-$replica.log" 2>&1 &
done
for port in "${FLEET_PORTS[@]}"; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
before=$(introspections "$IDP_PORT")
fleet_wrk=()
fleet_run="$$-$(date +%s)" # one name for the run's tokens, the same for the three wrk processes
for replica in 0 1 2; do
  BENCH_FLEET_TOKENS=$FLEET_TOKENS BENCH_FLEET_RUN=$fleet_run wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -s bench/fleet.lua "http://127.0.0.1:${FLEET_PORTS[$replica]}/token" >"$WORK/fleet-$replica.wrk" &
  fleet_wrk+=($!)
done
wait "${fleet_wrk[@]}"
sleep 1 # answers of the last requests, if any are still on their way to Redis
fleet_calls=$(( $(introspections "$IDP_PORT") - before ))
fleet_sent=$(awk '/^tokens sent:/ { if ($3 > n) n = $3 } END { print n + 0 }' "$WORK"/fleet-?.wrk)
fleet_distinct=$(( fleet_sent < FLEET_TOKENS ? fleet_sent : FLEET_TOKENS ))
# A Redis call past cache.redis_timeout makes a replica go on alone for a while (a backoff).
fleet_redis_failures=$(cat "$WORK"/fleet-?.log | grep -c 'Redis call failed' || true)
fleet_rates=()
for replica in 0 1 2; do
  read -r rate p50 p99 errors < <(summarize < "$WORK/fleet-$replica.wrk")
  fleet_rates+=("$rate req/s (p50 $p50 ms, p99 $p99 ms, non-2xx $errors)")
done

printf '\n%s, %s connections, %ss per phase, %s cores\n' "$(date -u +%F)" "$CONNECTIONS" "$DURATION" "$(nproc)"
printf '%-44s %10s %9s %9s %8s %s\n' phase req/s p50_ms p99_ms non2xx note
printf '%-44s %10s %9s %9s %8s %s\n' "(b) baseline GET /healthz" "$base_rate" "$base_p50" "$base_p99" "$base_err" "1.00"
printf '%-44s %10s %9s %9s %8s %s\n' "(a) cache-hit exchange (L1 warm, Redis L2)" "$hit_rate" "$hit_p50" "$hit_p99" "$hit_err" \
  "$(ratio "$hit_rate" "$base_rate") of baseline; upstream calls during phase: $hit_calls"
printf '%-44s %10s %9s %9s %8s %s\n' "(f) forward-auth decision, cache hit" "$fa_rate" "$fa_p50" "$fa_p99" "$fa_err" \
  "$(ratio "$fa_rate" "$base_rate") of baseline; upstream calls during phase: $fa_calls"
printf '%-44s %10s %9s %9s %8s %s\n' "(c) cold exchange, Redis L2" "$cold_rate" "$cold_p50" "$cold_p99" "$cold_err" \
  "$cold_ratio of in-process cold (median of rounds: ${round_ratios[*]}), $(ratio "$cold_rate" "$idp_rate") of upstream rate; upstream calls: $cold_calls; Redis commands/miss: $redis_per_miss (PING $pings_per_miss); CPU/miss: ours $cold_us µs, redis-server $redis_us µs"
printf '%-44s %10s %9s %9s %8s %s\n' "(l) cold exchange, in-process cache only" "$local_rate" "$local_p50" "$local_p99" "$local_err" \
  "$(ratio "$local_rate" "$idp_rate") of upstream rate; upstream calls: $local_calls; CPU/miss: ours $local_us µs"
printf '%-44s %10s %9s %9s %8s %s\n' "    fake upstream introspection, direct" "$idp_rate" "$idp_p50" "$idp_p99" "$idp_err" ""
printf '%-44s %10s %9s %9s %8s %s\n' "(p) fake upstream through nginx, bare proxy" "$proxy_rate" "$proxy_p50" "$proxy_p99" "$proxy_err" \
  "$(ratio "$proxy_rate" "$idp_rate") of upstream rate: the ceiling; (c) $(median "${cold_ceiling[@]}") of it (rounds: ${cold_ceiling[*]}), (l) $(median "${local_ceiling[@]}") (rounds: ${local_ceiling[*]})"
printf '%-44s %10s %9s %9s %8s %s\n' "(n) nginx -> echo, no decision" "$direct_rate" "$direct_p50" "$direct_p99" "$direct_err" "1.00"
printf '%-44s %10s %9s %9s %8s %s\n' "(g) nginx -> forward-auth -> echo" "$gw_rate" "$gw_p50" "$gw_p99" "$gw_err" \
  "$(ratio "$gw_rate" "$direct_rate") of nginx -> echo"
printf '\n(r) three replicas on one Redis, the same %s tokens asked of each at once, %s connections per replica\n' "$FLEET_TOKENS" "$CONNECTIONS"
for replica in 0 1 2; do printf '    replica %d: %s\n' "$((replica + 1))" "${fleet_rates[$replica]}"; done
if (( fleet_sent < FLEET_TOKENS )); then fleet_note="no replica got through the list: the last tokens sent may not have been answered"
elif (( fleet_calls == fleet_distinct )); then fleet_note="equal: one upstream call per token across the fleet"
else fleet_note="NOT equal: $(( fleet_calls - fleet_distinct )) extra"; fi
printf '    distinct tokens: %s, upstream calls: %s (%s)\n' "$fleet_distinct" "$fleet_calls" "$fleet_note"
printf '    Redis calls failed (timed out) on the replicas: %s\n' "$fleet_redis_failures"
if [ -n "${BENCH_PROFILE:-}" ]; then
  printf '\nProfile of the service during (c), perf at 499 Hz with DWARF call graphs:\n'
  perf script -i "$WORK/perf.data" 2>/dev/null | python3 bench/flame.py --folded "${BENCH_FOLDED:-/dev/null}"
fi
