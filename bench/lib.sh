# Shared by the bench scripts (sourced, not run): the tools they install, the wrk summary, the
# CPU reading, and the service's client and upstream as the fake upstream (bench/fake_idp.rs)
# and the wrk scripts expect them.

# Installs the apt package $2 when the command $1 is missing.
ensure_command() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wrk output → "rate p50 p99 non2xx" (latencies in ms).
summarize() {
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rate = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { errors = $NF }
    END { printf "%.0f %.2f %.2f %d\n", rate, p50, p99, errors }'
}

# CPU time of the process $1 so far (utime + stime), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# How often the fake upstream on port $1 has been asked to introspect.
introspections() { curl -s "http://127.0.0.1:$1/stats" | sed 's/.*"introspections":\([0-9]*\).*/\1/'; }

# Sets BENCH_SECRET_HASH for the bench client's secret (with the binary $1) and exports
# BENCH_BASIC, the Authorization header the wrk scripts send.
bench_client() {
  BENCH_SECRET_HASH=$(printf 'bench-secret' | "$1" hash-secret)
  export BENCH_BASIC="Basic $(printf 'bench:bench-secret' | base64 -w0)"
}

# The configuration's upstream (the fake upstream on port $1, introspection only) and client.
idp_and_client_toml() {
  cat <<TOML
[[upstreams]]
name = "idp"
issuer = "http://127.0.0.1:$1"
introspection_endpoint = "http://127.0.0.1:$1/introspect"
client_id = "token-exchange"
client_secret = "upstream-secret"
default_for_opaque = true
[[clients]]
client_id = "bench"
secret_hash = "$BENCH_SECRET_HASH"
audiences = ["orders"]
scopes = ["read", "write"]
TOML
}
