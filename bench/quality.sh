#!/usr/bin/env bash
# Routing-quality benchmark: one pool of simulated orchestrators with capacity limits,
# heterogeneous latency and a fault schedule (flapping 500s, CUDA OOM, a 10 s hang, a crash and
# a cold restart, an orchestrator shared with other gateways), replayed behind byoc-gateway,
# HAProxy and nginx in one run, with the same closed-loop clients. Prints jobs, good jobs,
# goodput and p50/p95/p99/max per target, once per over-capacity behaviour (refuse, slow).
#
# Usage: bench/quality.sh [SECONDS=30] [CLIENTS=12] [extra flags of examples/quality.rs]
#   e.g. bench/quality.sh 30 12 --over-capacity refuse
# Needs: haproxy and nginx (apt-get install haproxy nginx). Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}; CLIENTS=${2:-12}; shift $(( $# < 2 ? $# : 2 ))
for tool in haproxy nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "missing $tool: apt-get install haproxy nginx" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"
ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet --bin byoc-gateway --example quality
exec target/release/examples/quality --seconds "$SECS" --clients "$CLIENTS" "$@"
