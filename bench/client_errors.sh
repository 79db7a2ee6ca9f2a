#!/usr/bin/env bash
# A pair answering 422 at once to every job, beside a healthy sibling: CLIENTS clients (curl,
# one job after another each) for SECONDS through the release gateway; prints how many jobs got
# the healthy sibling's 200 and how many the faulty pair's 422, overall and in the second half of
# the run (once the gateway has seen enough answers to compare the two).
#
# MODE overflow (default): the sibling takes 20 ms a job with 2 slots, so with 4 clients the
#   jobs it has no room for go elsewhere.
# MODE slower: the sibling takes 150 ms a job with room for all, slower than the neutral 100 ms a
#   never-measured pair is costed at.
#
# Usage: [BASE=BINARY] bench/client_errors.sh [SECONDS=20] [CLIENTS=4] [MODE=overflow|slower]
#   BASE: another gateway binary to measure instead (a build from before a change); the
#   simulators are always this tree's.
# Needs: curl, python3. Loopback only; bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}; CLIENTS=${2:-4}; MODE=${3:-overflow}
cargo build --release --quiet --bin byoc-gateway
BIN=target/release/byoc-gateway
GWBIN=${BASE:-$BIN}
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
GOOD=$(free_port); BAD=$(free_port); GW=$(free_port); ADM=$(free_port)
case $MODE in
  overflow) GOODARGS="--latency-ms 20 --capacity 2" ;;
  slower) GOODARGS="--latency-ms 150 --capacity 64" ;;
  *) echo "MODE is overflow or slower" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
"$BIN" sim --addr 127.0.0.1:$GOOD --name good --capability bench $GOODARGS >"$WORK/sim1.out" 2>"$WORK/sim1.log" &
"$BIN" sim --addr 127.0.0.1:$BAD --name bad --capability bench --latency-ms 0 --capacity 64 \
  >"$WORK/sim2.out" 2>"$WORK/sim2.log" &
wait_sims 2
curl -sf -o /dev/null -X POST "http://127.0.0.1:$BAD/sim/knobs?capability=bench" -H 'Content-Type: application/json' \
  -d '{"status": 422, "status_body": "Unprocessable"}'
printf '[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n[[orchestrators]]\nurl = "http://127.0.0.1:%s"\ncapabilities = ["bench"]\n[log]\nlevel = "error"\n' \
  "$GOOD" "$BAD" >"$WORK/gateway.toml"
"$GWBIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" \
  >"$WORK/gw.out" 2>"$WORK/gw.log" &
wait_ready "$WORK/gw.out" "$WORK/gw.log"
H=$(bench_header c)
START=$(date +%s.%N)
client() { # N: jobs one after another until SECONDS have passed; "seconds-since-start status" per job
  local end=$(( $(date +%s) + SECS ))
  while [ "$(date +%s)" -lt $end ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -X POST -H "Livepeer: $H" -d '{}' \
      "http://127.0.0.1:$GW/process/request/bench")
    echo "$(date +%s.%N) $code"
  done >"$WORK/client$1"
}
PIDS=()
for c in $(seq "$CLIENTS"); do client "$c" & PIDS+=($!); done
wait "${PIDS[@]}"
cat "$WORK"/client* >"$WORK/all"
python3 - "$WORK/all" "$START" "$SECS" "$MODE" "${BASE:-this tree}" <<'PY'
import sys, collections
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
start, secs, mode, binary = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
def summary(rs):
    c = collections.Counter(code for _, code in rs)
    n = sum(c.values())
    return f"{n} jobs: {c.get('200', 0)} x 200, {c.get('422', 0)} x 422 ({100 * c.get('422', 0) / max(n, 1):.1f} %)" + \
        "".join(f", {v} x {k}" for k, v in sorted(c.items()) if k not in ("200", "422"))
late = [r for r in rows if float(r[0]) - start >= secs / 2]
print(f"== mode {mode}, {secs:.0f} s, gateway: {binary}")
print("all:         " + summary(rows))
print("second half: " + summary(late))
PY
