#!/usr/bin/env bash
# Blank-line SSE flood: STREAMS event-stream jobs at once through the release gateway to a
# simulator that sends one event and then nothing but blank lines, 4 KiB at a time as fast as
# the connection takes them, until the job's timeout_seconds (SECONDS): go-livepeer's
# orchestrator when its worker's stream ends without [DONE]. Prints the gateway's CPU time per
# stream (and as a share of one core over the job's timeout_seconds, how long the flood lasts),
# how long the streams stayed open, and the bytes that reached the client.
#
# Usage: [BASE=BINARY] bench/sse_flood.sh [STREAMS=2] [SECONDS=10]
#   BASE: another gateway binary to measure instead (a build from before a change); the
#   simulator is always this tree's.
# Needs: curl, python3. Loopback only; bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-2}; SECS=${2:-10}
cargo build --release --quiet --bin byoc-gateway
BIN=target/release/byoc-gateway
GWBIN=${BASE:-$BIN}
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); GW=$(free_port); ADM=$(free_port)
"$BIN" sim --addr 127.0.0.1:$SIM --name flood --capability bench --latency-ms 0 --capacity 64 --sse-events 1 \
  >"$WORK/sim.out" 2>"$WORK/sim.log" &
SIMPID=$!
wait_sims 1
curl -sf -o /dev/null -X POST "http://127.0.0.1:$SIM/sim/knobs?capability=bench" -H 'Content-Type: application/json' \
  -d '{"sse_flood": true}'
printf '[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n[log]\nlevel = "error"\n' "$SIM" \
  >"$WORK/gateway.toml"
"$GWBIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" \
  >"$WORK/gw.out" 2>"$WORK/gw.log" &
GWPID=$!
wait_ready "$WORK/gw.out" "$WORK/gw.log"
H=$(printf '{"id":"f","request":"{}","parameters":"{}","capability":"bench","capability_url":"","sender":"","sig":"","timeout_seconds":%d}' "$SECS" | base64 -w0)
# CPU ticks (user + system) of a process so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
G0=$(ticks $GWPID); S0=$(ticks $SIMPID); T0=$(date +%s.%N)
seq "$STREAMS" | xargs -P "$STREAMS" -I{} curl -sN --max-time $((SECS + 30)) -o /dev/null \
  -w '%{http_code} %{size_download} %{time_total}\n' -X POST -H "Livepeer: $H" -d '{}' \
  "http://127.0.0.1:$GW/process/request/bench" >"$WORK/streams"
G1=$(ticks $GWPID); S1=$(ticks $SIMPID); T1=$(date +%s.%N)
python3 - "$STREAMS" "$HZ" "$G0" "$G1" "$S0" "$S1" "$T0" "$T1" "$WORK/streams" "$SECS" "${BASE:-this tree}" <<'PY'
import sys
streams, hz = int(sys.argv[1]), int(sys.argv[2])
g0, g1, s0, s1 = (float(x) for x in sys.argv[3:7])
t0, t1 = float(sys.argv[7]), float(sys.argv[8])
rows = [line.split() for line in open(sys.argv[9]) if line.strip()]
secs, binary = sys.argv[10], sys.argv[11]
wall = t1 - t0
gw_cpu, sim_cpu = (g1 - g0) / hz, (s1 - s0) / hz
print(f"== {streams} flooding stream(s), timeout_seconds {secs}, gateway: {binary}")
print("status x bytes to client x seconds open: " + ", ".join(f"{c} x {b} B x {float(t):.2f} s" for c, b, t in rows))
print(f"wall {wall:.2f} s; gateway CPU {gw_cpu:.2f} s in all, {gw_cpu / streams:.2f} s per stream"
      f" = {100 * gw_cpu / streams / float(secs):.1f} % of a core over the job's {secs} s; simulator CPU {sim_cpu:.2f} s")
PY
