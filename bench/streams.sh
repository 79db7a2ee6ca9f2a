#!/usr/bin/env bash
# Live streams side by side, all on loopback, in one run and interleaved:
#   direct  -> the simulated orchestrator's own stream calls and trickle channels
#   nginx   -> nginx as a plain proxy in front of that orchestrator (buffering off both ways,
#              upstream keep-alive): the same calls and channels through it
#   gateway -> byoc-gateway (release): /process/stream/start, the stream's own ingress, egress
#              and data URLs, relayed to the same orchestrator
# Same load for all (examples/streams_load.rs): MEDIA streams publishing a segment every 500 ms
# at 1 MiB/s each way and reading the processed segments back, plus DATA data-only streams whose
# data lines are read (SSE from the gateway, the -data trickle channel otherwise); the simulator's
# runner turns each input segment into an output segment as it arrives.
#
# Prints per target and round: segment latency p50/p99 (from the start of a segment's POST to the
# first and to the last byte of the processed segment read back), MiB relayed, the proxy's CPU
# seconds per MiB (gateway and nginx processes, from /proc), and the gateway's RSS with every
# stream running against its RSS before (per stream); then the medians and the ratios.
#
# Usage: bench/streams.sh [ROUNDS=3] [SECONDS=20] [MEDIA=20] [DATA=200]
# Needs: nginx (apt-get install nginx). Every loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-20}; MEDIA=${3:-20}; DATA=${4:-200}
command -v nginx >/dev/null || { echo "missing nginx: apt-get install nginx" >&2; exit 1; }
cargo build --release --quiet --bin byoc-gateway --example streams_load
BIN=target/release/byoc-gateway; LOAD=target/release/examples/streams_load
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); NGX=$(free_port); GW=$(free_port); ADM=$(free_port)
TICK=$(getconf CLK_TCK)

"$BIN" sim --addr 127.0.0.1:$SIM --name bench --capability bench --latency-ms 0 --capacity 1000000 \
  >"$WORK/sim.out" 2>"$WORK/sim.log" &
wait_sims 1
# Runner events every second and a data line every 500 ms (go-livepeer's runners emit about that).
curl -sf -X POST "http://127.0.0.1:$SIM/sim/knobs" -H 'Content-Type: application/json' \
  -d '{"stream_event_interval_ms":1000,"stream_data_interval_ms":500}' >/dev/null

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<CFG
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  upstream sim { server 127.0.0.1:$SIM; keepalive 512; }
  server {
    listen 127.0.0.1:$NGX;
    client_max_body_size 0;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
}
CFG
nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx.log" &
NGXPID=$!

cat >"$WORK/gateway.toml" <<CFG
[[orchestrators]]
url = "http://127.0.0.1:$SIM"
capabilities = ["bench"]
[log]
level = "warn"
CFG
"$BIN" run --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
  --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
GWPID=$!
wait_ready "$WORK/gw.out" "$WORK/gw.log"
for _ in $(seq 50); do kill -0 "$NGXPID" 2>/dev/null && [ -n "$(pgrep -P "$NGXPID" || true)" ] && break; sleep 0.1; done

# CPU ticks (user + system) of PIDS, summed.
cpu() { local t=0 u s; for p in "$@"; do read -r u s < <(cut -d' ' -f14,15 "/proc/$p/stat"); t=$((t + u + s)); done; echo "$t"; }
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

RSS_IDLE=$(rss_kib "$GWPID")
echo "# streams: $MEDIA media (1 MiB/s each way) + $DATA data-only, ${SECS}s per target, $ROUNDS rounds; gateway RSS idle ${RSS_IDLE} KiB"
for round in $(seq "$ROUNDS"); do
  for target in direct nginx gateway; do
    case $target in
      direct) URL="http://127.0.0.1:$SIM"; PIDS=() ;;
      nginx) URL="http://127.0.0.1:$NGX"; mapfile -t PIDS < <(pgrep -P "$NGXPID"); PIDS+=("$NGXPID") ;;
      gateway) URL="http://127.0.0.1:$GW"; PIDS=("$GWPID") ;;
    esac
    rm -f "$WORK/ready"; SAMPLER=
    if [ "$target" = gateway ]; then
      # The gateway's memory with every stream running, half-way through the run.
      ( for _ in $(seq 600); do [ -f "$WORK/ready" ] && break; sleep 0.1; done
        sleep $((SECS / 2)); rss_kib "$GWPID" >"$WORK/rss-$round" ) &
      SAMPLER=$!
    fi
    c0=$(cpu "${PIDS[@]}")
    "$LOAD" --target "$target" --url "$URL" --media "$MEDIA" --data "$DATA" --seconds "$SECS" \
      --tag "r$round-$target" --ready-file "$WORK/ready" >"$WORK/$target-$round.json" 2>>"$WORK/load.log"
    c1=$(cpu "${PIDS[@]}")
    [ -z "$SAMPLER" ] || wait "$SAMPLER" || true
    if [ "$target" = gateway ]; then
      # What the gateway did with this round's streams: swaps by reason, ends by reason.
      curl -sf "http://127.0.0.1:$ADM/admin/streams" | python3 -c '
import json, sys, collections
tag = sys.argv[1]; streams = [s for s in json.load(sys.stdin) if s["stream_id"].startswith(tag)]
swaps = collections.Counter(w["reason"] for s in streams for w in s["swap_history"])
ends = collections.Counter((s.get("ended") or {}).get("reason", {}).get("kind", s["state"]) for s in streams)
print("# gateway round", tag, "swaps", dict(swaps), "ends", dict(ends))' "r$round-gateway-" || true
    fi
    python3 - "$WORK/$target-$round.json" "$c0" "$c1" "$TICK" "$round" "$WORK/rss-$round" "$RSS_IDLE" <<'PY'
import json, sys, os
r = json.load(open(sys.argv[1])); c0, c1, tick = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu = (c1 - c0) / tick
r["cpu_s"] = round(cpu, 2)
r["cpu_ms_per_mib"] = round(1000 * cpu / r["mib"], 2) if r["target"] != "direct" and r["mib"] else None
if r["target"] == "gateway" and os.path.exists(sys.argv[6]):
    rss = int(open(sys.argv[6]).read()); r["rss_kib"] = rss
    r["rss_kib_per_stream"] = round((rss - int(sys.argv[7])) / max(1, r["streams"]), 1)
r["round"] = int(sys.argv[5])
print(json.dumps(r))
json.dump(r, open(sys.argv[1], "w"))
PY
  done
done
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, sys, statistics
work, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for t in ["direct", "nginx", "gateway"]:
    rs = [json.load(open(f"{work}/{t}-{i}.json")) for i in range(1, rounds + 1)]
    m = lambda k: statistics.median([r[k] for r in rs if r.get(k) is not None]) if any(r.get(k) is not None for r in rs) else None
    med[t] = {k: m(k) for k in ["first_p50_ms", "first_p99_ms", "last_p50_ms", "last_p99_ms", "mib", "cpu_ms_per_mib", "rss_kib_per_stream", "errors", "segments", "data_lines"]}
    print(f"median {t:8}", json.dumps(med[t]))
g, n, d = med["gateway"], med["nginx"], med["direct"]
ratio = lambda a, b: round(a / b, 2) if a and b else None
print("gateway/nginx  latency first p50 %s p99 %s, last p50 %s p99 %s; CPU per MiB %s" % (
    ratio(g["first_p50_ms"], n["first_p50_ms"]), ratio(g["first_p99_ms"], n["first_p99_ms"]),
    ratio(g["last_p50_ms"], n["last_p50_ms"]), ratio(g["last_p99_ms"], n["last_p99_ms"]),
    ratio(g["cpu_ms_per_mib"], n["cpu_ms_per_mib"])))
print("gateway/direct latency first p50 %s p99 %s, last p50 %s p99 %s" % (
    ratio(g["first_p50_ms"], d["first_p50_ms"]), ratio(g["first_p99_ms"], d["first_p99_ms"]),
    ratio(g["last_p50_ms"], d["last_p50_ms"]), ratio(g["last_p99_ms"], d["last_p99_ms"])))
PY
