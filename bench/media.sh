#!/usr/bin/env bash
# Glass-to-glass latency and CPU per stream of RTMP media through byoc-gateway, against the same
# ffmpeg publisher and listener connected directly, interleaved in one run (bench/media.py says
# how each figure is measured). The orchestrator is the simulator with a pass-through runner on
# loopback, so the difference is what the gateway's media path adds: RTMP ingest, the remux to
# MPEG-TS segments cut at keyframes, the trickle relay both ways and the remux to the RTMP output.
#
# Usage: bench/media.sh [ROUNDS=3] [SECONDS=20] [STREAMS=1,4]
# Needs: ffmpeg (apt-get install ffmpeg), /usr/bin/time (apt-get install time). Every loop is
# bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-20}; COUNTS=${3:-1,4}
command -v ffmpeg >/dev/null || { echo "missing ffmpeg: apt-get install ffmpeg" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet --bin byoc-gateway
BIN=target/release/byoc-gateway
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
. bench/lib.sh
SIM=$(free_port); GW=$(free_port); ADM=$(free_port); RTMP=$(free_port)

"$BIN" sim --addr 127.0.0.1:$SIM --name bench --capability bench --latency-ms 0 --capacity 1000000 \
  >"$WORK/sim.out" 2>"$WORK/sim.log" &
wait_sims 1
cat >"$WORK/gateway.toml" <<CFG
[[orchestrators]]
url = "http://127.0.0.1:$SIM"
capabilities = ["bench"]
[streams]
rtmp_addr = "127.0.0.1:$RTMP"
[log]
level = "warn"
CFG
"$BIN" run --config "$WORK/gateway.toml" --http-addr 127.0.0.1:$GW --admin-addr 127.0.0.1:$ADM \
  --data-dir "$WORK/data" >"$WORK/gw.out" 2>"$WORK/gw.log" &
GWPID=$!
wait_ready "$WORK/gw.out" "$WORK/gw.log"

echo "# RTMP media: ${SECS}s of 640x360 H.264 30 fps (2 s GOP) + AAC per stream, streams $COUNTS, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  for n in ${COUNTS//,/ }; do
    for mode in direct gateway; do
      timeout $((SECS + 180)) python3 bench/media.py "$mode" "http://127.0.0.1:$GW" "$GWPID" "$RTMP" "$n" "$SECS" "r$round-n$n" \
        | tee -a "$WORK/results.jsonl"
    done
  done
done
python3 - "$WORK/results.jsonl" <<'PY'
import json, sys, statistics, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["streams"], r["mode"])].append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs) if rs and rs[0].get(k) is not None else None
for n in sorted({k[0] for k in by}):
    d, g = by[(n, "direct")], by[(n, "gateway")]
    print(f"streams {n}: delay p50 direct {med(d,'delay_p50_ms')} ms, gateway {med(g,'delay_p50_ms')} ms "
          f"(added {med(g,'delay_p50_ms') - med(d,'delay_p50_ms')} ms); p95 direct {med(d,'delay_p95_ms')}, "
          f"gateway {med(g,'delay_p95_ms')} (added {med(g,'delay_p95_ms') - med(d,'delay_p95_ms')} ms); "
          f"frames {med(g,'frames')}/{med(g,'frames_sent')} ({med(g,'frames_at_stop')} only at the stop); gateway CPU {med(g,'gateway_cpu_pct_per_stream')} % "
          f"of a core per stream ({med(g,'gateway_cpu_s_per_video_s')} s per s of video), "
          f"publisher's encoder {med(g,'encoder_cpu_pct_per_stream')} %")
PY
