#!/usr/bin/env bash
# What the operator kit costs at scale (issue 27), all on loopback: ORCHS simulated
# orchestrators x CAPS capabilities (default 1,000 x 10 = 10,000 idle pair actors) behind the
# release gateway, started three times on the same pool:
#   - off:      history.max_pairs = 0, metrics_pair_series = 0 (no plots, no per-pair series);
#   - defaults: history for 1,000 pairs, per-pair series for 500 (the defaults), the history
#               sampled every 200 ms over 18 s: the default 90 samples, filled in 18 s;
#   - all:      history for every pair (max_pairs = 10,000), per-pair series for 10,000.
# For each: RSS once the history window is full, the gateway's CPU while idle, and the time and
# size of GET /metrics and GET /admin/history (median of 3). RSS differences are the memory the
# kit holds (the allocator makes single figures noisy: read the deltas, not the digits).
#
# Usage: bench/operator.sh [ORCHS=1000] [CAPS=10] [SIMS=4]
# Needs: curl, python3. Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHS=${1:-1000}; CAPS=${2:-10}; SIMS=${3:-4}
PAIRS=$((ORCHS * CAPS))
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
[ "$(ulimit -n)" -ge $((ORCHS * 3 + 256)) ] || ulimit -n $((ORCHS * 3 + 256)) || { echo "raise ulimit -n" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/byoc-gateway
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
CAPLIST=$(seq -f "cap-%02g" 0 $((CAPS - 1)) | paste -sd, -)

per=$(( (ORCHS + SIMS - 1) / SIMS )); left=$ORCHS
for s in $(seq "$SIMS"); do
  n=$(( left < per ? left : per )); left=$((left - n))
  [ "$n" -gt 0 ] || break
  addrs=$(for _ in $(seq "$n"); do echo 127.0.0.1:0; done | paste -sd, -)
  "$BIN" sim --addr "$addrs" --name "sim$s" --capability "$CAPLIST" --latency-ms 0 --capacity 1000 \
    >"$WORK/sim$s.out" 2>"$WORK/sim$s.log" &
done
wait_sims "$ORCHS"
GW=$(free_port); ADM=$(free_port)

# One file per configuration: the orchestrators (every pair starts at once) and the kit's knobs.
config() { # max_pairs pair_series
  python3 - "$WORK/urls" "$CAPLIST" "$1" "$2" <<'PY'
import sys
caps = ", ".join(f'"{c}"' for c in sys.argv[2].split(","))
print(f'metrics_pair_series = {sys.argv[4]}\n[history]\nperiod = "200ms"\nwindow = "18s"\nmax_pairs = {sys.argv[3]}\n')
for url in open(sys.argv[1]).read().split():
    print(f'[[orchestrators]]\nurl = "{url}"\ncapabilities = [{caps}]\n')
PY
}
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
routable() { curl -sf --max-time 10 "http://127.0.0.1:$ADM/admin/supervisor" | python3 -c 'import json,sys; print(json.load(sys.stdin)["routable"])' 2>/dev/null || echo 0; }
time_get() { # path -> "median_ms bytes"
  for _ in 1 2 3; do curl -s -o /dev/null --max-time 60 -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$ADM$1"; done \
    | sort -n | sed -n 2p | awk '{printf "%.1f ms, %d bytes", $1 * 1000, $2}'
}

declare -A R
run() { # label max_pairs pair_series
  local label=$1
  config "$2" "$3" >"$WORK/$label.toml"
  rm -rf "$WORK/data"
  "$BIN" --config "$WORK/$label.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
    --data-dir "$WORK/data" >"$WORK/gw.out" 2>>"$WORK/gw.log" &
  local pid=$!
  wait_ready "$WORK/gw.out" "$WORK/gw.log"
  for _ in $(seq 600); do [ "$(routable)" -ge "$PAIRS" ] && break; sleep 0.1; done
  echo "  $label: $(routable) of $PAIRS pairs routable; filling the history window (18 s)" >&2
  sleep 20
  local c0 c1 hz; hz=$(getconf CLK_TCK); c0=$(cpu_ticks "$pid"); sleep 10; c1=$(cpu_ticks "$pid")
  R[$label.rss]=$(rss_mib "$pid")
  R[$label.cpu]=$(python3 -c "print(f'{100 * ($c1 - $c0) / $hz / 10:.0f}')")
  R[$label.metrics]=$(time_get /metrics)
  R[$label.history]=$(time_get /admin/history)
  kill -TERM "$pid"; wait "$pid" || true
}
run off 0 0
run defaults 1000 500
run all "$PAIRS" "$PAIRS"

cat <<TABLE

$ORCHS orchestrators x $CAPS capabilities = $PAIRS idle pairs; history sampled every 200 ms, 90 samples; $(nproc) cores
| configuration | RSS, history full | gateway CPU idle | GET /metrics | GET /admin/history |
| --- | --- | --- | --- | --- |
| off (max_pairs 0, pair series 0) | ${R[off.rss]} MiB | ${R[off.cpu]} % | ${R[off.metrics]} | ${R[off.history]} |
| defaults (history 1,000 pairs, series 500) | ${R[defaults.rss]} MiB | ${R[defaults.cpu]} % | ${R[defaults.metrics]} | ${R[defaults.history]} |
| all (history and series for $PAIRS pairs) | ${R[all.rss]} MiB | ${R[all.cpu]} % | ${R[all.metrics]} | ${R[all.history]} |
TABLE
