#!/usr/bin/env bash
# Capability sprawl (issue 22 item 6), all on loopback. One simulated orchestrator answers a
# token offering capacity for any capability name (`sim --any-capability`); for SECONDS (at most
# JOBS jobs, CLIENTS at once) clients send jobs each naming a new random capability. Then the
# gateway is stopped (SIGTERM) and started again on the same data dir. Per binary: the gateway's
# RSS before, after the names, and after one /metrics scrape; capabilities registered, pair
# actors, /metrics lines labelled with a client's name and /metrics size; what is registered
# after the restart.
#
# BIN (default: the release build here) is measured, then BASE if given (an older build of the
# gateway, e.g. the commit before a fix, copied aside): the same simulator (from BIN) serves both.
#
# Usage: [BIN=...] [BASE=...] bench/sprawl.sh [SECONDS=20] [JOBS=20000] [CLIENTS=8]
# Needs: curl, python3. Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}; JOBS=${2:-20000}; CLIENTS=${3:-8}
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin byoc-gateway; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh

SIM=$(free_port)
"$BIN" sim --addr 127.0.0.1:$SIM --name any --capability bench --latency-ms 0 --any-capability >"$WORK/sim.out" 2>"$WORK/sim.log" &
wait_sims 1

rss_mb() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
start_gateway() { # BINARY NAME
  GW=$(free_port); ADM=$(free_port)
  "$1" --orch-addr "http://127.0.0.1:$SIM" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
    --data-dir "$WORK/data-$2" >"$WORK/$2.out" 2>>"$WORK/$2.log" &
  GW_PID=$!
  wait_ready "$WORK/$2.out" "$WORK/$2.log"
}
field() { # PATH PYTHON-EXPRESSION-ON-j
  curl -sf --max-time 30 "http://127.0.0.1:$ADM$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"
}

measure() { # BINARY NAME
  : >"$WORK/$2.out"
  start_gateway "$1" "$2"
  sleep 2
  local rss0; rss0=$(rss_mb $GW_PID)
  python3 - "$GW" "$SECS" "$JOBS" "$CLIENTS" >"$WORK/$2.load" <<'PY'
import base64, collections, http.client, json, sys, threading, time, uuid
port, secs, jobs, clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline, lock, codes, sent = time.time() + secs, threading.Lock(), collections.Counter(), [0]
def worker():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < deadline:
        with lock:
            if sent[0] >= jobs:
                return
            sent[0] += 1
        name = "junk-" + uuid.uuid4().hex[:16]
        hdr = base64.b64encode(json.dumps({"request": "{}", "parameters": "{}", "capability": name,
                                           "timeout_seconds": 30}).encode()).decode()
        try:
            c.request("POST", "/process/request/x", body=b"{}", headers={"Livepeer": hdr})
            r = c.getresponse(); r.read(); code = r.status
        except Exception:
            c.close(); c = http.client.HTTPConnection("127.0.0.1", port, timeout=30); code = "error"
        with lock:
            codes[code] += 1
threads = [threading.Thread(target=worker) for _ in range(clients)]
[t.start() for t in threads]; [t.join() for t in threads]
print(sent[0], ", ".join(f"{n} x {c}" for c, n in sorted(codes.items(), key=lambda kv: -kv[1])))
PY
  local rss1 caps pairs; rss1=$(rss_mb $GW_PID)
  caps=$(field /admin/supervisor 'len(j["capabilities"])')
  pairs=$(field /admin/supervisor 'j["pair_actors"]')
  curl -sf --max-time 60 "http://127.0.0.1:$ADM/metrics" >"$WORK/$2.metrics"
  local series bytes rss2; series=$(grep -c 'capability="junk-' "$WORK/$2.metrics" || true)
  bytes=$(wc -c <"$WORK/$2.metrics"); rss2=$(rss_mb $GW_PID)
  kill -TERM $GW_PID; wait $GW_PID 2>/dev/null || true
  : >"$WORK/$2.out"
  start_gateway "$1" "$2"
  sleep 2
  local back rss3; back=$(field /admin/supervisor 'len(j["capabilities"])'); rss3=$(rss_mb $GW_PID)
  kill -TERM $GW_PID; wait $GW_PID 2>/dev/null || true
  read -r sent codes <"$WORK/$2.load"
  printf '| %s | %s in %s s (%s) | %s -> %s -> %s MB | %s | %s | %s lines, %s KB | %s (%s MB) |\n' \
    "$1" "$sent" "$SECS" "$codes" "$rss0" "$rss1" "$rss2" "$caps" "$pairs" "$series" "$((bytes / 1024))" "$back" "$rss3"
}

echo
echo "capability sprawl: one orchestrator answering tokens for any name; $(nproc) cores"
echo "| binary | jobs with new names (answers) | RSS before -> after -> after a scrape | capabilities | pair actors | /metrics: client-named | after a restart: capabilities (RSS) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
measure "$BIN" new
if [ -n "${BASE:-}" ]; then measure "$BASE" base; fi
