#!/usr/bin/env bash
# Hostile clients against the release gateway (issue 22): what they cost in memory, metric
# series and log, and whether ordinary jobs are still served.
#
# Usage: bench/hostile.sh MODE [ARGS]
#   labels  [SECONDS=15]            wrk POSTs jobs naming a new random capability each, past
#                                   the discovery budget; prints the series labelled with those
#                                   names, the /metrics size, RSS and log bytes
#   chunks  [MIB=4]                 MIB-MiB bodies sent as 1-byte chunks: one, then 4 at once,
#                                   then 8 at once; prints the peak RSS of each round
#   answers [N=40] [BYTES=66000000] [chunked]
#                                   N jobs at once whose answers are BYTES long (with or without
#                                   Content-Length); prints the peak RSS
#   stall   [MB=66] [N=4]           N uploads of MB megabytes from 127.0.0.2 stop one byte short;
#                                   meanwhile 6 jobs with 10 MB bodies from 127.0.0.1; prints
#                                   their statuses and how long the stalled uploads were held
# Env: BIN (default target/release/byoc-gateway, built), SIM_BIN (the simulator's binary,
# default BIN), EXTRA (gateway.toml lines).
# Needs: curl, python3, wrk (labels). Loopback only; bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?mode: labels, chunks, answers or stall}
shift
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin byoc-gateway; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); GW=$(free_port); ADM=$(free_port)
H=$(bench_header h)

start() { # SIM-FLAGS...
  "${SIM_BIN:-$BIN}" sim --addr 127.0.0.1:$SIM --name s --capability bench --capacity 1000 "$@" >"$WORK/sim.log" 2>&1 &
  printf '[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n%b\n' "$SIM" "${EXTRA:-}" >"$WORK/gateway.toml"
  "$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
  GWPID=$!
  wait_ready "$WORK/gw.out" "$WORK/gw.log"
  curl -s -o /dev/null -X POST -H "Livepeer: $H" -d '{}' http://127.0.0.1:$GW/process/request/bench
}
rss() { awk '/VmRSS/ {print $2}' /proc/$GWPID/status; }
mib() { echo "$(($1 / 1024)) MiB"; }
# Samples the gateway's RSS every 50 ms until the command given returns; prints the peak (kB).
peak_during() {
  "$@" >"$WORK/out" &
  local p=$! peak; peak=$(rss)
  while kill -0 $p 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.05; done
  wait $p || true
  echo "$peak"
}
codes() { sort "$1" | awk '{print $1}' | uniq -c | awk '{printf "%s x%s  ", $2, $1}'; }

case "$MODE" in
labels)
  SECONDS_=${1:-15}
  start --latency-ms 0
  cat >"$WORK/labels.lua" <<'LUA'
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function enc(s)
  return ((s:gsub(".", function(x)
    local r, c = "", x:byte()
    for i = 8, 1, -1 do r = r .. (c % 2 ^ i - c % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end
math.randomseed(os.time())
request = function()
  local cap = string.format("zz-%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  local h = enc('{"capability":"' .. cap .. '","request":"{}","timeout_seconds":5}')
  return wrk.format("POST", "/process/request/x", { ["Livepeer"] = h, ["Content-Type"] = "application/json" }, "{}")
end
LUA
  BEFORE=$(rss); LOG0=$(stat -c %s "$WORK/gw.log")
  wrk -t2 -c64 -d"${SECONDS_}s" -s "$WORK/labels.lua" http://127.0.0.1:$GW >"$WORK/wrk.out"
  AFTER=$(rss)
  curl -s http://127.0.0.1:$ADM/metrics >"$WORK/metrics"
  SCRAPED=$(rss)
  LOG=$(( $(stat -c %s "$WORK/gw.log") - LOG0 ))
  echo "== $SECONDS_ s of jobs naming random capabilities (wrk -t2 -c64)"
  grep -E 'requests in|Requests/sec' "$WORK/wrk.out"
  echo "codes logged: $(grep -o 'code="\?[a-z-]*' "$WORK/gw.log" | sort | uniq -c | tr '\n' ' ')"
  grep -E '^byoc_gateway_requests_total\{capability="unknown"' "$WORK/metrics" || true
  echo "series naming a client's random capability: $(grep -c 'capability="zz-' "$WORK/metrics" || true)"
  echo "/metrics: $(wc -c <"$WORK/metrics") bytes, $(grep -vc '^#' "$WORK/metrics") series"
  echo "log written during the run: $LOG bytes ($(( $(wc -l <"$WORK/gw.log") )) lines in all)"
  echo "gateway RSS: before $(mib "$BEFORE"), after the run $(mib "$AFTER"), after one scrape $(mib "$SCRAPED")"
  echo "a summary line:"; grep -m1 'were not logged' "$WORK/gw.log" | cut -c1-400
  ;;
chunks)
  MIB=${1:-4}
  start --latency-ms 200
  BEFORE=$(rss)
  echo "== bodies of $MIB MiB sent as 1-byte chunks"
  for n in 1 4 8; do
    P=$(peak_during python3 bench/hostile.py chunks "$GW" "$H" $((MIB << 20)) $n)
    echo "$n at once: statuses $(codes "$WORK/out")  peak RSS $(mib "$P")"
  done
  sleep 5
  echo "gateway RSS: before $(mib "$BEFORE"), 5 s after the last round $(mib "$(rss)")"
  ;;
answers)
  N=${1:-40}; BYTES=${2:-66000000}; CHUNKED=${3:-}
  start --latency-ms 100 --answer-bytes "$BYTES" ${CHUNKED:+--answer-chunked}
  BEFORE=$(rss)
  run() {
    seq "$N" | xargs -P "$N" -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 120 -X POST \
      -H "Livepeer: $H" -d '{}' http://127.0.0.1:$GW/process/request/bench
  }
  P=$(peak_during run)
  echo "== $N jobs at once, answers of $BYTES bytes${CHUNKED:+ (chunked, no Content-Length)}"
  echo "statuses: $(codes "$WORK/out")  slowest: $(sort -k2 -n "$WORK/out" | tail -1 | awk '{print $2}') s"
  echo "gateway RSS: before $(mib "$BEFORE"), peak $(mib "$P"), 5 s later $(sleep 5; mib "$(rss)")"
  ;;
stall)
  MB=${1:-66}; N=${2:-4}
  start --latency-ms 50
  head -c 10000000 /dev/zero >"$WORK/ten"
  python3 bench/hostile.py stall "$GW" "$H" $((MB * 1000000)) "$N" 127.0.0.2 >"$WORK/stalled" &
  STALL=$!
  # Until the stalled uploads have sent all the gateway takes (the bytes held stop growing).
  used=0; same=0
  for _ in $(seq 150); do
    sleep 0.2
    now=$(curl -s http://127.0.0.1:$ADM/metrics | awk '/^byoc_gateway_body_bytes / {print int($2)}')
    if [ "${now:-0}" -gt 0 ] && [ "${now:-0}" -eq "$used" ]; then same=$((same + 1)); else same=0; fi
    used=${now:-0}; [ $same -ge 3 ] && break
  done
  echo "== $N uploads of $MB MB stop one byte short (from 127.0.0.2); body bytes held: ${used:-0}"
  for i in $(seq 6); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 -X POST -H "Livepeer: $H" \
      -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/ten" http://127.0.0.1:$GW/process/request/bench
    sleep 0.5
  done >"$WORK/ten.codes"
  echo "6 jobs with 10 MB bodies meanwhile (from 127.0.0.1, 0.5 s apart): $(codes "$WORK/ten.codes")"
  wait $STALL || true
  echo "stalled uploads (status, seconds until answered): $(tr '\n' ';' <"$WORK/stalled")"
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
# Why jobs failed, when some did (the labels mode fails them on purpose).
[ "$MODE" = labels ] || grep -E 'job failed|attempt failed' "$WORK/gw.log" | head -4 | cut -c1-500 || true
