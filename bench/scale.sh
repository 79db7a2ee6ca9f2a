#!/usr/bin/env bash
# Scale benchmark, all on loopback: ORCHS simulated orchestrators x CAPS capabilities
# (default 1,000 x 10 = 10,000 pair actors), against the release gateway.
#   - SIMS simulator processes, each answering as ORCHS/SIMS orchestrators (one address each);
#   - the gateway with a config file listing every orchestrator with its CAPS capabilities
#     (declared capabilities: every pair starts at once, as in real use with [[orchestrators]]);
#   - cold start (empty data dir): time to the ready line and until every pair is probed and
#     routable; RSS with every pair idle; token probe rate and CPU at steady state;
#     GET /admin/pairs in full and paginated;
#   - SIGTERM (scores flushed), then a warm restart on the same data dir with the same config:
#     time to the ready line and until every pair is probed again, and RSS.
# Prints one table. Budget (docs/DESIGN): <= 64 MiB RSS with 10,000 idle pairs; start-up with
# 10,000 persisted pairs in about 2 s or less.
#
# Usage: bench/scale.sh [ORCHS=1000] [CAPS=10] [SIMS=4] [SETTLE_SECONDS=10]
# Needs: curl, python3. Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHS=${1:-1000}; CAPS=${2:-10}; SIMS=${3:-4}; SETTLE=${4:-10}
PAIRS=$((ORCHS * CAPS))
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
[ "$(ulimit -n)" -ge $((ORCHS * 3 + 256)) ] || ulimit -n $((ORCHS * 3 + 256)) || { echo "raise ulimit -n" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/byoc-gateway
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"' EXIT
. bench/lib.sh
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
CAPLIST=$(seq -f "cap-%02g" 0 $((CAPS - 1)) | paste -sd, -)

# Simulators: each binds its share of addresses on port 0 and prints one ready line per URL.
per=$(( (ORCHS + SIMS - 1) / SIMS ))
left=$ORCHS
for s in $(seq "$SIMS"); do
  n=$(( left < per ? left : per )); left=$((left - n))
  [ "$n" -gt 0 ] || break
  addrs=$(for _ in $(seq "$n"); do echo 127.0.0.1:0; done | paste -sd, -)
  "$BIN" sim --addr "$addrs" --name "sim$s" --capability "$CAPLIST" --latency-ms 0 --capacity 1000 \
    >"$WORK/sim$s.out" 2>"$WORK/sim$s.log" &
done
wait_sims "$ORCHS"
SIM_PIDS=$(jobs -p | paste -sd' ' -)
# Chosen after the simulators hold their 1,000 ephemeral ports, so none of them takes these.
GW=$(free_port); ADM=$(free_port)

python3 - "$WORK/urls" "$CAPLIST" >"$WORK/gateway.toml" <<'PY'
import sys
caps = ", ".join(f'"{c}"' for c in sys.argv[2].split(","))
for url in open(sys.argv[1]).read().split():
    print(f'[[orchestrators]]\nurl = "{url}"\ncapabilities = [{caps}]\n')
PY

admin() { curl -sf --max-time 30 "http://127.0.0.1:$ADM$1"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
probes_ok() { curl -sf --max-time 10 "http://127.0.0.1:$ADM/metrics" | awk '/^byoc_gateway_token_probes_total\{result="ok"\}/ {print $2}'; }

declare -A R
start_gateway() { # label -> sets GW_PID; records ready and all-probed times
  local label=$1 t0 t1 t2 pairs routable
  : >"$WORK/gw.out"
  t0=$(now)
  "$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
    --data-dir "$WORK/data" >"$WORK/gw.out" 2>>"$WORK/gw.log" &
  GW_PID=$!
  for i in $(seq 3000); do grep -q 'byoc-gateway ready' "$WORK/gw.out" && break; sleep 0.01; done
  grep -q 'byoc-gateway ready' "$WORK/gw.out" || { echo "gateway did not start" >&2; tail "$WORK/gw.log" >&2; exit 1; }
  t1=$(now)
  for i in $(seq 1200); do
    read -r pairs routable < <(admin /admin/supervisor 2>/dev/null \
      | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["pair_actors"], j["routable"])' 2>/dev/null || echo 0 0)
    [ $((i % 20)) -eq 0 ] && echo "  $label: $pairs pair actors, $routable routable ($(elapsed "$t0" "$(now)") s)" >&2
    [ "$routable" -ge "$PAIRS" ] && break
    sleep 0.05
  done
  t2=$(now)
  [ "$routable" -ge "$PAIRS" ] || echo "  $label: only $routable of $PAIRS pairs routable after 60 s" >&2
  R[$label.ready]=$(elapsed "$t0" "$t1"); R[$label.probed]=$(elapsed "$t0" "$t2")
}
idle_figures() { # label: RSS after a settle, then probe rate and CPU over SETTLE seconds
  local label=$1 p0 p1 c0 c1 s0 s1 pid
  sleep 2
  p0=$(probes_ok); c0=$(cpu_ticks "$GW_PID"); s0=0
  for pid in $SIM_PIDS; do s0=$((s0 + $(cpu_ticks "$pid"))); done
  sleep "$SETTLE"
  p1=$(probes_ok); c1=$(cpu_ticks "$GW_PID"); s1=0
  for pid in $SIM_PIDS; do s1=$((s1 + $(cpu_ticks "$pid"))); done
  local hz; hz=$(getconf CLK_TCK)
  R[$label.rss]=$(awk "BEGIN {printf \"%.1f\", $(rss_kib "$GW_PID") / 1024}"); R[$label.hwm]=$(awk "BEGIN {printf \"%.1f\", $(hwm_kib "$GW_PID") / 1024}")
  R[$label.probes]=$(python3 -c "print(f'{($p1 - $p0) / $SETTLE:.0f}')")
  R[$label.cpu]=$(python3 -c "print(f'{100 * ($c1 - $c0) / $hz / $SETTLE:.0f}')")
  R[$label.simcpu]=$(python3 -c "print(f'{100 * ($s1 - $s0) / $hz / $SETTLE:.0f}')")
}
time_get() { # path -> "median_seconds bytes" over 3 calls
  local path=$1 i out=()
  for i in 1 2 3; do out+=("$(curl -s -o /dev/null --max-time 60 -w '%{time_total} %{size_download} %{http_code}' "http://127.0.0.1:$ADM$path")"); done
  printf '%s\n' "${out[@]}" | sort -n | sed -n 2p
}
stop_gateway() {
  local t0; t0=$(now)
  kill -TERM "$GW_PID"
  for i in $(seq 300); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$GW_PID" 2>/dev/null && { echo "gateway did not stop in 30 s" >&2; kill -9 "$GW_PID"; }
  wait "$GW_PID" || echo "gateway exited non-zero" >&2
  R[stop]=$(elapsed "$t0" "$(now)")
}

echo "cold start: $ORCHS orchestrators x $CAPS capabilities = $PAIRS pairs" >&2
start_gateway cold
idle_figures cold
R[pairs_full]=$(time_get /admin/pairs)
R[pairs_page]=$(time_get '/admin/pairs?limit=100')
R[pairs_page_mid]=$(time_get "/admin/pairs?limit=1000&offset=$((PAIRS / 2))")
R[supervisor]=$(time_get /admin/supervisor)
stop_gateway
echo "warm restart on the same data dir" >&2
start_gateway warm
idle_figures warm
stop_gateway

ms() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.1f} ms')" "$1"; }
get_row() { local t b c; read -r t b c <<<"$2"; printf '| GET %s | %s | %s bytes (HTTP %s) |\n' "$1" "$(ms "$t")" "$b" "$c"; }
cat <<TABLE

$ORCHS orchestrators x $CAPS capabilities = $PAIRS pairs; $SIMS simulator processes; token_refresh default; $(nproc) cores
| measure | cold start (empty data dir) | warm restart (persisted) |
| --- | --- | --- |
| process start -> ready line | ${R[cold.ready]} s | ${R[warm.ready]} s |
| process start -> all $PAIRS pairs probed and routable | ${R[cold.probed]} s | ${R[warm.probed]} s |
| RSS with every pair idle (VmRSS) | ${R[cold.rss]} MiB | ${R[warm.rss]} MiB |
| peak RSS (VmHWM) | ${R[cold.hwm]} MiB | ${R[warm.hwm]} MiB |
| token probes answered per second (steady) | ${R[cold.probes]} /s | ${R[warm.probes]} /s |
| gateway CPU while idle (probing) | ${R[cold.cpu]} % of a core | ${R[warm.cpu]} % of a core |
| simulators' CPU (all) | ${R[cold.simcpu]} % of a core | ${R[warm.simcpu]} % of a core |

| admin call at $PAIRS pairs (median of 3) | time | size |
| --- | --- | --- |
$(get_row /admin/pairs "${R[pairs_full]}")
$(get_row "/admin/pairs?limit=100" "${R[pairs_page]}")
$(get_row "/admin/pairs?limit=1000&offset=$((PAIRS / 2))" "${R[pairs_page_mid]}")
$(get_row /admin/supervisor "${R[supervisor]}")

SIGTERM to exit (scores flushed): ${R[stop]} s (last stop)
TABLE
