#!/usr/bin/env bash
# A fleet sharing orchestrators (issue 26 item 5): the same capacity-limited, faulty, changing
# pool (examples/changing/pool.rs) at the same total open-loop load (Poisson arrivals, latency
# from each job's scheduled arrival), behind byoc-gateway x1, then x3 replicas sharing their
# registry through a real etcd with one HAProxy in round robin in front, and in the same run
# HAProxy x3 (each configured as a careful operator would, with its share of every
# orchestrator's slots) behind the same front. Prints good share, goodput, p50/p95/p99, the
# orchestrators' capacity refusals, and the targets: the fleet within 10 % of one gateway's good
# share and p99, and ahead of the HAProxy fleet on both.
#
# Usage: bench/fleet.sh [SECONDS=40] [LOAD=0.6] [extra flags of examples/changing/main.rs]
# (e.g. `--front-balance leastconn`: the front sends each job to the replica with the fewest in
# flight, instead of the issue's round robin)
# Needs: etcd (etcd-server) and haproxy. Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-40}; shift $(( $# < 1 ? $# : 1 ))
LOAD=${1:-0.6}; shift $(( $# < 1 ? $# : 1 ))
export PATH="$PATH:/usr/sbin"
for tool in etcd haproxy; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install etcd-server haproxy" >&2; exit 1; }
done
ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
etcd --name bench --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$CP" --advertise-client-urls "http://127.0.0.1:$CP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "bench=http://127.0.0.1:$PP" --logger zap --log-level error 2>"$work/etcd.log" &
ETCD=$!
trap 'kill $ETCD 2>/dev/null; wait $ETCD 2>/dev/null; rm -rf "$work"' EXIT
cargo build --release --quiet --bin byoc-gateway --example changing
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CP/health" >/dev/null && break; sleep 0.1; done
echo "etcd on 127.0.0.1:$CP; each run of byoc-gateway uses its own registry prefix"
target/release/examples/changing --seconds "$SECS" --load "$LOAD" --instances 1 --instances 3 \
  --target gateway --target haproxy --front --fleet-targets \
  --gateway-config "$(printf '\n[registry]\nbackend = "etcd"\netcd_endpoints = ["http://127.0.0.1:%s"]\nprefix = "/bench/{run}/"\n' "$CP")" \
  "$@"
