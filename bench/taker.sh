#!/usr/bin/env bash
# A taker (issue 22 item 4), all on loopback: a simulated on-chain orchestrator that takes the
# gateway's tickets and answers every job `400 Insufficient balance for request`, while every
# token brings fresh ticket params and a new (low) balance, as the probe's did. A gateway with a
# key (the test keystore) sends it one job a second for SECONDS, at the default token refresh
# (10 s). Per binary: payments the orchestrator took, tickets, their expected value, jobs served.
#
# BIN (default: the release build here) is measured, then BASE if given (an older build, e.g.
# the commit before the fix); the simulator comes from BIN (the knobs are newer than BASE).
#
# Usage: [BIN=...] [BASE=...] bench/taker.sh [SECONDS=40] [PRICE=46300000000]
# PRICE is in wei per second ($0.50/h at $3,000/ETH). Needs: curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-40}; PRICE=${2:-46300000000}
for tool in curl python3; do command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin byoc-gateway; BIN=target/release/byoc-gateway; fi
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
KEYS=actors/tests/fixtures/keystore

measure() { # BINARY NAME
  local sim gw adm
  sim=$(free_port); gw=$(free_port); adm=$(free_port)
  "$BIN" sim --addr 127.0.0.1:$sim --name taker --capability bench --latency-ms 0 --price "$PRICE" \
    >"$WORK/sim-$2.out" 2>"$WORK/sim-$2.log" &
  local sim_pid=$!
  for _ in $(seq 100); do grep -q 'sim ready' "$WORK/sim-$2.out" 2>/dev/null && break; sleep 0.1; done
  curl -sf -X POST "http://127.0.0.1:$sim/sim/knobs?capability=bench" -H 'Content-Type: application/json' \
    -d '{"tickets": true, "taker": true, "balance_churn": true}' >/dev/null
  printf '[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n' "$sim" >"$WORK/$2.toml"
  "$1" --config "$WORK/$2.toml" --http-addr 127.0.0.1:$gw --admin-addr 127.0.0.1:$adm --data-dir "$WORK/data-$2" \
    --eth-keystore-path "$KEYS/scrypt.json" --eth-password "$KEYS/password.txt" >"$WORK/$2.out" 2>"$WORK/$2.log" &
  local gw_pid=$!
  wait_ready "$WORK/$2.out" "$WORK/$2.log"
  sleep 1
  local codes=()
  for i in $(seq "$SECS"); do
    codes+=("$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST -H "Livepeer: $(bench_header "t$i")" \
      -d '{}' "http://127.0.0.1:$gw/process/request/bench")")
    sleep 1
  done
  local state; state=$(curl -sf "http://127.0.0.1:$sim/sim/state")
  kill -TERM $gw_pid $sim_pid; wait $gw_pid $sim_pid 2>/dev/null || true
  local answers; answers=$(printf '%s\n' "${codes[@]}" | sort | uniq -c | awk '{printf "%s%s x %s", (NR > 1 ? ", " : ""), $1, $2}')
  python3 - "$1" "$SECS" "$answers" "$state" <<'PY'
import json, sys
binary, secs, answers, state = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
p, ok = state["payments"], state["capabilities"]["bench"]["stats"]["ok"]
ev = p["tickets"] * 1e10  # the simulator's tickets are worth 10^10 wei each
print(f"| {binary} | {secs} jobs in {secs} s ({answers}) | {p['payments']} | {p['tickets']} | {ev:.2e} | {ok} |")
PY
}

echo
echo "a taker: takes tickets, refuses every job, fresh params and balance per token (10 s refresh); $(nproc) cores"
echo "| binary | jobs (answers) | payments taken | tickets | EV paid (wei) | jobs served |"
echo "| --- | --- | --- | --- | --- | --- |"
measure "$BIN" new
if [ -n "${BASE:-}" ]; then measure "$BASE" base; fi
