#!/usr/bin/env bash
# Benchmark against a peer: Keycloak's own standard token exchange (RFC 8693, V2) and our
# POST /token, for the same Keycloak access token, the same client and the same audience, in
# one run, at 16 and 64 connections. For each: req/s, p50, p99, and the CPU and RSS of the
# process that answers (Keycloak's JVM, or token-exchange).
#   bench/peers.sh [seconds-per-phase=10]
# Keycloak comes from target/providers/ (scripts/test fetches it; this script does too when
# it is missing) and runs `start-dev` with tests/providers/keycloak/realm.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION=${1:-10}
WARMUP=${WARMUP:-10}
source scripts/keycloak.sh
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[bench/peers] %s\n' "$*" >&2; }
apt_install() { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }

ensure_command wrk wrk
timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379' 2>/dev/null ||
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null

JAVA_HOME=$(java_home_21) || { log "Keycloak needs Java 21 or later under /usr/lib/jvm"; exit 1; }
ensure_keycloak

cargo build --release --quiet --bin token-exchange
BIN=${CARGO_TARGET_DIR:-target}/release/token-exchange

KC_PORT=$(free_port); KC_MANAGEMENT_PORT=$(free_port)
rm -rf "$KEYCLOAK_HOME/data" && mkdir -p "$KEYCLOAK_HOME/data/import"
cp tests/providers/keycloak/realm.json "$KEYCLOAK_HOME/data/import/"
log "starting Keycloak on 127.0.0.1:$KC_PORT"
JAVA_HOME="$JAVA_HOME" "$KEYCLOAK_HOME/bin/kc.sh" start-dev --import-realm --hostname="http://127.0.0.1:$KC_PORT" \
  --http-host=127.0.0.1 --http-port="$KC_PORT" --http-management-host=127.0.0.1 \
  --http-management-port="$KC_MANAGEMENT_PORT" --health-enabled=true --log-level=warn \
  </dev/null >"$WORK/keycloak.log" 2>&1 &
KC_SCRIPT_PID=$!
PIDS+=("$KC_SCRIPT_PID")
for _ in $(seq 1 180); do
  curl -fsS "http://127.0.0.1:$KC_MANAGEMENT_PORT/health/ready" >/dev/null 2>&1 && break
  kill -0 "$KC_SCRIPT_PID" 2>/dev/null || { tail -n 40 "$WORK/keycloak.log" >&2; exit 1; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$KC_MANAGEMENT_PORT/health/ready" >/dev/null || { log "Keycloak did not start"; exit 1; }
KC_PID=$(ps -o pid= --ppid "$KC_SCRIPT_PID" | tr -d ' ' | head -n 1)   # the JVM under kc.sh
ISSUER="http://127.0.0.1:$KC_PORT/realms/token-exchange"

# Our service: the realm as a JWT upstream (keys through discovery), the client gateway with
# the same secret as in Keycloak, Redis as L2, one instance with the default minted-token
# reuse and one that signs every token, as Keycloak does. start_ours leaves the new server's
# pid and port in STARTED_PID and STARTED_PORT (no subshell, so cleanup knows the pid).
HASH=$(printf '%s' gateway-secret | "$BIN" hash-secret)
start_ours() {
  local name=$1 reuse=$2 port
  port=$(free_port)
  cat >"$WORK/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[storage]
database_url = "sqlite://$WORK/$name.db"
[tokens]
reuse_minted = $reuse
[cache]
redis_url = "redis://127.0.0.1:6379"
redis_prefix = "te-peers-$name-$$"
[[upstreams]]
name = "keycloak"
issuer = "$ISSUER"
audiences = ["token-exchange"]
[[clients]]
client_id = "gateway"
secret_hash = "$HASH"
audiences = ["orders"]
scopes = ["openid", "profile", "email"]
TOML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!
  STARTED_PORT=$port
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
}
start_ours reuse true
OURS_PID=$STARTED_PID OURS_PORT=$STARTED_PORT
start_ours signing false
SIGNING_PID=$STARTED_PID SIGNING_PORT=$STARTED_PORT

# One user token of the realm's application (aud: token-exchange and gateway), exchanged by
# the client gateway for the audience orders, at both.
SUBJECT=$(curl -fsS "$ISSUER/protocol/openid-connect/token" -u app:app-secret \
  -d grant_type=password -d username=alice -d password=alice-password -d scope=openid | jq -r .access_token)
cat >"$WORK/exchange.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(printf 'gateway:gateway-secret' | base64 -w0)"
wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
  .. "&subject_token=$SUBJECT"
  .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
  .. "&audience=orders"
LUA
KC_URL="$ISSUER/protocol/openid-connect/token"
OURS_URL="http://127.0.0.1:$OURS_PORT/token"
SIGNING_URL="http://127.0.0.1:$SIGNING_PORT/token"
for url in "$KC_URL" "$OURS_URL" "$SIGNING_URL"; do
  status=$(curl -s -o "$WORK/answer.json" -w '%{http_code}' -X POST "$url" -u gateway:gateway-secret \
    --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange --data-urlencode "subject_token=$SUBJECT" \
    --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:access_token --data-urlencode audience=orders)
  [ "$status" = 200 ] || { log "the exchange at $url answers $status: $(cat "$WORK/answer.json")"; exit 1; }
done

rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
# One phase: wrk at $3 connections on $2, answered by the process $1; prints the table row.
phase() {
  local pid=$1 url=$2 connections=$3 label=$4 before after rate p50 p99 errors cores
  before=$(cpu_ticks "$pid")
  read -r rate p50 p99 errors < <(wrk -t1 -c"$connections" -d"${DURATION}s" --latency -s "$WORK/exchange.lua" "$url" | summarize)
  after=$(cpu_ticks "$pid")
  cores=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v s="$DURATION" 'BEGIN { printf "%.2f", t / hz / s }')
  printf '| %s | %s | %s | %s ms | %s ms | %s | %s | %s MiB |\n' \
    "$label" "$connections" "$rate" "$p50" "$p99" "$errors" "$cores" "$(rss_mib "$pid")"
}

log "warming up each for ${WARMUP}s (the JVM compiles its hot paths)"
for url in "$KC_URL" "$OURS_URL" "$SIGNING_URL"; do
  wrk -t1 -c16 -d"${WARMUP}s" -s "$WORK/exchange.lua" "$url" >/dev/null
done

printf '\n%s, %ss per phase, %s cores, wrk -t1\n\n' "$(date -u +%F)" "$DURATION" "$(nproc)"
printf '| server | connections | req/s | p50 | p99 | non-2xx | CPU (cores) | RSS after |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
for connections in 16 64; do
  phase "$KC_PID" "$KC_URL" "$connections" "Keycloak $KEYCLOAK_VERSION standard token exchange"
  phase "$OURS_PID" "$OURS_URL" "$connections" "token-exchange /token (minted-token reuse, the default)"
  phase "$SIGNING_PID" "$SIGNING_URL" "$connections" "token-exchange /token (reuse_minted = false)"
done
