#!/usr/bin/env bash
# Large-body burst: CLIENTS clients each POST one MIB-mebibyte job body at once (curl, in
# parallel) to the release gateway in front of a simulator; prints the gateway's RSS before,
# its peak during, and its RSS after the burst, and the status counts. Shows that buffered
# bodies stay under limits.body_budget_bytes plus a fixed margin and that memory is returned.
#
# Usage: [BIN=binary] bench/bodies.sh [CLIENTS=20] [MIB=64] [AFTER_SECONDS=10] [extra gateway.toml lines]
# Needs: curl, python3. Loopback only; bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-20}; MIB=${2:-64}; AFTER=${3:-10}; EXTRA=${4:-}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin byoc-gateway; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); GW=$(free_port); ADM=$(free_port)
"$BIN" sim --addr 127.0.0.1:$SIM --name big --capability bench --latency-ms 200 --capacity 1000 >"$WORK/sim.log" 2>&1 &
printf '[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n[log]\nlevel = "error"\n%b\n' "$SIM" "$EXTRA" >"$WORK/gateway.toml"
"$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
GWPID=$!
wait_ready "$WORK/gw.out" "$WORK/gw.log"
head -c $((MIB << 20)) /dev/zero >"$WORK/body"
H=$(bench_header b)
rss() { awk '/VmRSS/ {print $2}' /proc/$GWPID/status; }
curl -s -o /dev/null -X POST -H "Livepeer: $H" -d '{}' http://127.0.0.1:$GW/process/request/bench
BEFORE=$(rss); PEAK=$BEFORE
seq "$CLIENTS" | xargs -P "$CLIENTS" -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 120 -X POST \
  -H "Livepeer: $H" -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/body" \
  http://127.0.0.1:$GW/process/request/bench >"$WORK/codes" &
CURLS=$!
while kill -0 $CURLS 2>/dev/null; do r=$(rss); [ "$r" -gt "$PEAK" ] && PEAK=$r; sleep 0.05; done
END=$(rss)
for i in $(seq $((AFTER * 2))); do sleep 0.5; done
AFTER_RSS=$(rss)
echo "== $CLIENTS clients x $MIB MiB bodies at once"
echo "status counts: $(sort "$WORK/codes" | uniq -c | awk '{printf "%s x%s  ", $2, $1}')"
echo "gateway RSS: before $((BEFORE / 1024)) MiB, peak $((PEAK / 1024)) MiB, at the end $((END / 1024)) MiB, ${AFTER} s later $((AFTER_RSS / 1024)) MiB"
