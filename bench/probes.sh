#!/usr/bin/env bash
# Probe storms, all on loopback. Two measurements, one table row:
#   - unreachable: DEAD orchestrators (loopback addresses nothing listens on) declaring one
#     capability; after 15 s, over SETTLE seconds: token probes per second and gateway CPU;
#   - unknown names: JOBS concurrent jobs, each for a different capability name nobody offers,
#     against LIVE simulated orchestrators; token probes they caused and their answers.
# BIN picks the gateway binary (default the release build here), so an older build can be
# measured the same way.
#
# Usage: bench/probes.sh [DEAD=10000] [LIVE=50] [JOBS=200] [SETTLE_SECONDS=10]
# Needs: curl, python3. Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
DEAD=${1:-10000}; LIVE=${2:-50}; JOBS=${3:-200}; SETTLE=${4:-10}
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
[ "$(ulimit -n)" -ge $((LIVE * 3 + JOBS * 2 + 1024)) ] || ulimit -n $((LIVE * 3 + JOBS * 2 + 1024)) || { echo "raise ulimit -n" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh

start_gateway() { # CONFIG NAME
  GW=$(free_port); ADM=$(free_port)
  "$BIN" --config "$1" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
    --data-dir "$WORK/data-$2" >"$WORK/$2.out" 2>"$WORK/$2.log" &
  GW_PID=$!
  for _ in $(seq 3000); do grep -q 'byoc-gateway ready' "$WORK/$2.out" && return 0; sleep 0.01; done
  echo "gateway did not start" >&2; tail "$WORK/$2.log" >&2; exit 1
}
probes() { curl -sf --max-time 10 "http://127.0.0.1:$ADM/metrics" | awk '/^byoc_gateway_token_probes_total\{/ {s += $2} END {print s + 0}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# 1. Unreachable orchestrators: 127.1.x.y:9, where nothing listens (connect refused at once).
python3 - "$DEAD" >"$WORK/dead.toml" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f'[[orchestrators]]\nurl = "https://127.1.{i // 250}.{i % 250 + 1}:9"\ncapabilities = ["bench"]\n')
PY
start_gateway "$WORK/dead.toml" dead
sleep 15
p0=$(probes); c0=$(cpu_ticks $GW_PID); sleep "$SETTLE"; p1=$(probes); c1=$(cpu_ticks $GW_PID)
dead_probes=$(python3 -c "print(f'{($p1 - $p0) / $SETTLE:.0f}')")
dead_cpu=$(python3 -c "print(f'{100 * ($c1 - $c0) / $hz / $SETTLE:.0f}')")
kill $GW_PID; wait $GW_PID 2>/dev/null || true

# 2. Unknown names against live orchestrators.
addrs=$(for _ in $(seq "$LIVE"); do echo 127.0.0.1:0; done | paste -sd, -)
"$BIN" sim --addr "$addrs" --name live --capability bench --latency-ms 0 >"$WORK/sim.out" 2>"$WORK/sim.log" &
wait_sims "$LIVE"
python3 -c 'import sys; [print(f"[[orchestrators]]\nurl = \"{u.strip()}\"\ncapabilities = [\"bench\"]\n") for u in sys.stdin]' <"$WORK/urls" >"$WORK/live.toml"
start_gateway "$WORK/live.toml" live
sleep 3
p0=$(probes); t0=$(date +%s.%N); curls=()
for i in $(seq "$JOBS"); do
  hdr=$(printf '{"request":"{}","parameters":"{}","capability":"nobody-%s","timeout_seconds":30}' "$i" | base64 -w0)
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 -X POST -H "Livepeer: $hdr" -d '{}' \
    "http://127.0.0.1:$GW/process/request/x" >>"$WORK/codes" &
  curls+=($!)
done
wait "${curls[@]}" || true
secs=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
p1=$(probes)
codes=$(sort "$WORK/codes" | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')

echo
echo "probe storms; $(nproc) cores"
echo "| binary | $DEAD unreachable: probes/s | CPU | $JOBS unknown-name jobs x $LIVE orchestrators: token probes | in | answers |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '| %s | %s | %s %% of a core | %s | %s s | %s |\n' "$BIN" "$dead_probes" "$dead_cpu" "$((p1 - p0))" "$secs" "$codes"
