#!/usr/bin/env bash
# Sparse offers, all on loopback: ORCHS orchestrators that declare nothing (as the discovery
# webhook and --orch-addr register them), each offering one of CAPS capabilities, with every
# capability registered (a [capabilities.NAME] section each). That is ORCHS real offers; a
# gateway that made a pair per orchestrator per registered capability would hold
# ORCHS x CAPS pairs. Measures, once the pairs have settled (every real offer routable and the
# pair count steady for 3 s):
#   - pair actors, routable pairs, RSS;
#   - over SETTLE seconds idle: gateway CPU, token probes per second, bytes the gateway
#     wrote to disk (/proc/PID/io), store size.
# Prints one table row. BIN picks the gateway binary (default the release build here), so an
# older build can be measured the same way.
#
# Usage: bench/sparse.sh [ORCHS=760] [CAPS=40] [SETTLE_SECONDS=20]
# Needs: curl, python3. Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHS=${1:-760}; CAPS=${2:-40}; SETTLE=${3:-20}
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
[ "$(ulimit -n)" -ge $((ORCHS * 3 + 256)) ] || ulimit -n $((ORCHS * 3 + 256)) || { echo "raise ulimit -n" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh

# One simulator process per capability, answering as its share of the orchestrators.
per=$(( (ORCHS + CAPS - 1) / CAPS )); left=$ORCHS
for c in $(seq 0 $((CAPS - 1))); do
  n=$(( left < per ? left : per )); left=$((left - n))
  [ "$n" -gt 0 ] || break
  addrs=$(for _ in $(seq "$n"); do echo 127.0.0.1:0; done | paste -sd, -)
  "$BIN" sim --addr "$addrs" --name "sim$c" --capability "$(printf 'cap-%02d' "$c")" --latency-ms 0 --capacity 4 \
    >"$WORK/sim$c.out" 2>"$WORK/sim$c.log" &
done
wait_sims "$ORCHS"
GW=$(free_port); ADM=$(free_port)
python3 - "$WORK/urls" "$CAPS" >"$WORK/gateway.toml" <<'PY'
import sys
for url in open(sys.argv[1]).read().split():
    print(f'[[orchestrators]]\nurl = "{url}"\ncapabilities = []\n')
for c in range(int(sys.argv[2])):
    print(f'[capabilities.cap-{c:02d}]\nmax_attempts = 2\n')
PY

admin() { curl -sf --max-time 30 "http://127.0.0.1:$ADM$1"; }
"$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
  --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
GW_PID=$!
for i in $(seq 3000); do grep -q 'byoc-gateway ready' "$WORK/gw.out" && break; sleep 0.01; done
grep -q 'byoc-gateway ready' "$WORK/gw.out" || { echo "gateway did not start" >&2; tail "$WORK/gw.log" >&2; exit 1; }
t0=$(date +%s.%N); last=-1; steady=0; settled=""
for i in $(seq 1200); do  # at most 120 s
  read -r pairs routable < <(admin /admin/supervisor 2>/dev/null \
    | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["pair_actors"], j["routable"])' 2>/dev/null || echo 0 0)
  if [ "$pairs" = "$last" ]; then steady=$((steady + 1)); else steady=0; last=$pairs; fi
  [ $((i % 50)) -eq 0 ] && echo "  $pairs pair actors, $routable routable" >&2
  if [ "$routable" -ge "$ORCHS" ] && [ "$steady" -ge 30 ]; then settled=$(python3 -c "print(f'{$(date +%s.%N) - $t0 - 3:.1f}')"); break; fi
  sleep 0.1
done
[ -n "$settled" ] || settled="not within 120 s"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wbytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
probes() { curl -sf --max-time 10 "http://127.0.0.1:$ADM/metrics" | awk '/^byoc_gateway_token_probes_total\{/ {s += $2} END {print s + 0}'; }
p0=$(probes); c0=$(cpu_ticks $GW_PID); w0=$(wbytes $GW_PID)
sleep "$SETTLE"
p1=$(probes); c1=$(cpu_ticks $GW_PID); w1=$(wbytes $GW_PID)
hz=$(getconf CLK_TCK)
rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$GW_PID/status)
store=$(du -sk "$WORK/data" | awk '{printf "%.1f", $1 / 1024}')
sup=$(admin /admin/supervisor)
pairs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pair_actors"])' "$sup")
routable=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["routable"])' "$sup")
echo
echo "$ORCHS orchestrators declaring nothing, each offering 1 of $CAPS registered capabilities ($ORCHS real offers); $(nproc) cores; idle figures over $SETTLE s"
echo "| binary | pair actors | routable | settled after | RSS | CPU idle | token probes/s | disk writes | store size |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '| %s | %s | %s | %s s | %s MiB | %s %% of a core | %s | %s KiB/s | %s MiB |\n' "$BIN" "$pairs" "$routable" "$settled" "$rss" \
  "$(python3 -c "print(f'{100 * ($c1 - $c0) / $hz / $SETTLE:.0f}')")" \
  "$(python3 -c "print(f'{($p1 - $p0) / $SETTLE:.0f}')")" \
  "$(python3 -c "print(f'{($w1 - $w0) / 1024 / $SETTLE:.0f}')")" "$store"
