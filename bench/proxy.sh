#!/usr/bin/env bash
# Side-by-side proxy benchmark, all on loopback, in one run and interleaved:
#   direct    -> simulated orchestrator (release build, answers from memory)
#   haproxy-1 -> plain HTTP reverse proxy (Debian haproxy, nbthread 1) -> the same simulator
#   haproxy-N -> the same with nbthread = cores (HAProxy's best setting differs by phase on
#                a small machine, so both run and each figure is compared with the better one)
#   floor     -> examples/floor_proxy.rs: actix-web + awc relaying the job with none of the
#                gateway's work, the floor of the design's stack
#   gateway   -> byoc-gateway (release) -> the same simulator
# Same load generator (wrk, POSTing BYOC jobs with a Livepeer header) for all; several
# rounds; prints throughput and p50/p99 per target, their medians, and the ratios.
#
# Two phases per round: "saturated" (CONNECTIONS connections as fast as possible: throughput)
# and "paced" (about 2,000 requests/s: the latency each proxy adds, as the design measures it).
#
#   baseline  -> (only with BASE=path/to/an/older/byoc-gateway) that binary, the same way: a
#                before/after of a change measured in one interleaved run (build the older
#                commit in a worktree and copy its target/release/byoc-gateway aside)
#
# Usage: [BASE=BINARY] bench/proxy.sh [ROUNDS=3] [SECONDS=10] [CONNECTIONS=32]
# Needs: wrk, haproxy (apt-get install wrk haproxy). Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-10}; CONNS=${3:-32}
for tool in wrk haproxy; do command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk haproxy" >&2; exit 1; }; done
cargo build --release --quiet --bin byoc-gateway --example floor_proxy
BIN=target/release/byoc-gateway
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); HAP1=$(free_port); HAPN=$(free_port); FLOOR=$(free_port); GW=$(free_port); ADM=$(free_port)
BGW=$(free_port); BADM=$(free_port)

"$BIN" sim --addr 127.0.0.1:$SIM --name bench --capability bench --latency-ms 0 --capacity 1000000 >"$WORK/sim.log" 2>&1 &
haproxy_cfg() { # THREADS PORT
  cat <<CFG
global
  nbthread $1
  log stderr local0 err
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:$2
  default_backend be
backend be
  http-reuse always
  server sim 127.0.0.1:$SIM
CFG
}
haproxy_cfg 1 "$HAP1" >"$WORK/haproxy-1.cfg"
haproxy_cfg "$(nproc)" "$HAPN" >"$WORK/haproxy-N.cfg"
for n in 1 N; do haproxy -f "$WORK/haproxy-$n.cfg" -db >"$WORK/haproxy-$n.log" 2>&1 & done
target/release/examples/floor_proxy "127.0.0.1:$FLOOR" "http://127.0.0.1:$SIM" >"$WORK/floor.log" 2>&1 &
cat >"$WORK/gateway.toml" <<CFG
[[orchestrators]]
url = "http://127.0.0.1:$SIM"
capabilities = ["bench"]
[log]
level = "error"
CFG
"$BIN" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
wait_ready "$WORK/gw.out" "$WORK/gw.log"
if [ -n "${BASE:-}" ]; then
  "$BASE" --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$BGW --admin-addr 127.0.0.1:$BADM --data-dir "$WORK/base-data" >"$WORK/base.out" 2>"$WORK/base.log" &
  wait_ready "$WORK/base.out" "$WORK/base.log"
fi

# A job header valid for both the gateway (client side) and the simulator (orchestrator side).
wrk_post b >"$WORK/post.lua"
URL_PATH=/process/request/bench
# Warm-up (connections, JIT-free but caches and pools).
TARGETS="direct haproxy-1 haproxy-N floor gateway${BASE:+ baseline}"
declare -A PORT=([direct]=$SIM [haproxy-1]=$HAP1 [haproxy-N]=$HAPN [floor]=$FLOOR [gateway]=$GW [baseline]=$BGW)
for t in $TARGETS; do wrk -t1 -c4 -d1s -s "$WORK/post.lua" "http://127.0.0.1:${PORT[$t]}$URL_PATH" >/dev/null; done

# Paced phase: 20 connections each waiting 10 ms between requests, about 2,000 requests/s in
# all, far below every target's capacity, so latency is the proxy's own and not queueing.
cat "$WORK/post.lua" >"$WORK/paced.lua"
echo 'function delay() return 10 end' >>"$WORK/paced.lua"

run() { # port script connections -> "rps p50_ms p99_ms non2xx"
  wrk -t2 -c"$3" -d"${SECS}s" --latency -s "$2" "http://127.0.0.1:$1$URL_PATH" | python3 -c '
import sys, re
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(p):
    m = re.search(r"\s" + p + r"%\s+([\d.]+)(us|ms|s)", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(rps, ms("50"), ms("99"), errs.group(1) if errs else 0)'
}
declare -A RES
for r in $(seq "$ROUNDS"); do
  for phase in saturated paced; do
    for t in $TARGETS; do
      p=${PORT[$t]}
      if [ $phase = saturated ]; then RES[$phase,$t,$r]=$(run "$p" "$WORK/post.lua" "$CONNS")
      else RES[$phase,$t,$r]=$(run "$p" "$WORK/paced.lua" 20); fi
      echo "round $r $phase $t: rps p50_ms p99_ms non2xx = ${RES[$phase,$t,$r]}"
    done
  done
done
python3 - "$ROUNDS" <<PY
import statistics, sys
rounds = int(sys.argv[1])
targets = "$TARGETS".split()
res = {$(for ph in saturated paced; do for t in $TARGETS; do for r in $(seq "$ROUNDS"); do printf '("%s","%s",%s):"%s",' "$ph" "$t" "$r" "${RES[$ph,$t,$r]}"; done; done; done)}
for phase in ("saturated", "paced"):
    med = {}
    print(f"== {phase}" + (" (throughput: $CONNS connections, as fast as possible)" if phase == "saturated" else " (latency: ~2,000 requests/s)"))
    for t in targets:
        rows = [list(map(float, res[(phase, t, r)].split())) for r in range(1, rounds + 1)]
        med[t] = [statistics.median(c) for c in zip(*rows)]
        print(f"median {t:9s} {med[t][0]:10.0f} req/s  p50 {med[t][1]:7.3f} ms  p99 {med[t][2]:7.3f} ms  non-2xx {med[t][3]:.0f}")
    d, f, g = med["direct"], med["floor"], med["gateway"]
    haps = ("haproxy-1", "haproxy-N")
    if phase == "saturated":
        best = max(haps, key=lambda t: med[t][0])
        h = med[best]
        print(f"throughput gateway/haproxy = {g[0]/h[0]:.2f} against {best}, HAProxy's best here   (target >= 1.0)")
        print(f"  floor/haproxy = {f[0]/h[0]:.2f} (the design's stack with no gateway logic); gateway/floor = {g[0]/f[0]:.2f}")
        if "baseline" in med:
            print(f"  gateway/baseline = {g[0]/med['baseline'][0]:.2f} (this build against BASE, same run)")
    else:
        for i, p in ((1, "p50"), (2, "p99")):
            best = min(haps, key=lambda t: med[t][i])
            target = "no more" if p == "p50" else "within 1.5x"
            print(f"added {p}: gateway {g[i]-d[i]:.3f} ms vs haproxy {med[best][i]-d[i]:.3f} ms ({best}, HAProxy's best here; target: {target}); floor {f[i]-d[i]:.3f} ms")
            if "baseline" in med:
                print(f"  baseline added {p}: {med['baseline'][i]-d[i]:.3f} ms")
PY
