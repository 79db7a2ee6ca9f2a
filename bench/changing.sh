#!/usr/bin/env bash
# Routing under a changing pool: open-loop Poisson load at a share of the pool's capacity
# (latency from each job's scheduled arrival), behind one and two instances of byoc-gateway,
# HAProxy and nginx, while the pool changes (a late joiner, 500s in 4 s windows, a 30x latency
# spike for 10 s, orchestrators of different sizes refusing past capacity). Prints each target
# against the oracle (every job on the fastest free healthy orchestrator, computed here) and
# the targets of issue 23.
#
# Usage: bench/changing.sh [SECONDS=40] [extra flags of examples/changing/main.rs]
#   e.g. bench/changing.sh 40 --load 0.6 --instances 2 --target gateway
# Needs: haproxy and nginx (apt-get install haproxy nginx). Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-40}; shift $(( $# < 1 ? $# : 1 ))
for tool in haproxy nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing $tool: apt-get install haproxy nginx" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"
ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet --bin byoc-gateway --example changing
exec target/release/examples/changing --seconds "$SECS" "$@"
