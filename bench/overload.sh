#!/usr/bin/env bash
# Overload run: drives byoc-gateway far past its in-flight job limit and shows that it sheds
# with fast 503s (Retry-After: 1) while memory stays bounded, then serves normally again.
#
#   simulator (release, 100 ms per job) <- byoc-gateway (limits.max_inflight_jobs = LIMIT)
#   wrk with CONNECTIONS connections (CONNECTIONS >> LIMIT) for SECONDS
#
# Prints the status counts, the time of single requests measured during the overload, and the
# gateway's RSS before, at its peak during, and after the run.
#
# Usage: bench/overload.sh [LIMIT=64] [CONNECTIONS=512] [SECONDS=8]
# Needs: wrk (apt-get install wrk). Loopback only; every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${1:-64}; CONNS=${2:-512}; SECS=${3:-8}
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/byoc-gateway
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); GW=$(free_port); ADM=$(free_port)
ulimit -n 65536 2>/dev/null || true

"$BIN" sim --addr 127.0.0.1:$SIM --name slow --capability bench --latency-ms 100 --capacity 1000000 >"$WORK/sim.log" 2>&1 &
cat >"$WORK/gateway.toml" <<CFG
[[orchestrators]]
url = "http://127.0.0.1:$SIM"
capabilities = ["bench"]
[limits]
max_inflight_jobs = $LIMIT
[log]
level = "error"
CFG
"$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
GWPID=$!
wait_ready "$WORK/gw.out" "$WORK/gw.log"

HEADER=$(bench_header o)
{ wrk_post o; cat <<'LUA'; } >"$WORK/post.lua"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() ok = 0; shed = 0; other = 0 end
function response(status)
  if status == 200 then ok = ok + 1 elseif status == 503 then shed = shed + 1 else other = other + 1 end
end
function done()
  local o, s, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); s = s + t:get("shed"); x = x + t:get("other") end
  io.write(string.format("status 200: %d   503 (shed): %d   other: %d\n", o, s, x))
end
LUA
rss() { awk '/VmRSS/ {print $2}' /proc/$GWPID/status; }
URL=http://127.0.0.1:$GW/process/request/bench
wrk -t1 -c4 -d1s -s "$WORK/post.lua" "$URL" >/dev/null   # warm-up
RSS_BEFORE=$(rss)

wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency -s "$WORK/post.lua" "$URL" >"$WORK/wrk.txt" &
WRK=$!
PEAK=$RSS_BEFORE; PROBES=""
for i in $(seq $((SECS * 2))); do   # bounded: SECS seconds of 0.5 s samples
  sleep 0.5
  r=$(rss); [ "$r" -gt "$PEAK" ] && PEAK=$r
  if [ $((i % 4)) -eq 2 ]; then
    PROBES+=$(curl -s -o /dev/null -w ' %{http_code}:%{time_total}s' -X POST -H "Livepeer: $HEADER" -d '{}' "$URL")
  fi
done
wait $WRK
sleep 1
RSS_AFTER=$(rss)
AFTER=$(curl -s -o /dev/null -w '%{http_code} in %{time_total}s' -X POST -H "Livepeer: $HEADER" -d '{}' "$URL")

echo "== overload: limit $LIMIT jobs in flight, $CONNS connections for ${SECS}s, orchestrator 100 ms per job"
grep -E 'status 200|Requests/sec|50%|99%' "$WORK/wrk.txt"
echo "single requests during the overload (status:time):$PROBES"
echo "request after the overload: $AFTER"
echo "gateway RSS: before ${RSS_BEFORE} kB, peak during ${PEAK} kB, after ${RSS_AFTER} kB"
curl -s "http://127.0.0.1:$ADM/metrics" | grep -E '^byoc_gateway_jobs_shed_total' || true
