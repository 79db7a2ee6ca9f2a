#!/usr/bin/env bash
# Live Runner routing quality (issue 28 item 6): one pool of simulated Live Runner
# orchestrators (single-shot runners of three speeds, a flapping one, a hanging one, one held
# full by other clients, one removed and back), replayed behind byoc-gateway, the Python SDK's
# sequential strategy (discovery order, one runner after another, no ranking) and HAProxy, with
# the same closed-loop clients. Prints calls, good calls, goodput and p50/p95/p99 per target.
#
# Usage: bench/liverunner.sh [SECONDS=30] [CLIENTS=12] [extra flags of examples/liverunner_quality]
# Needs: haproxy (apt-get install haproxy). Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}; CLIENTS=${2:-12}; shift $(( $# < 2 ? $# : 2 ))
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { echo "missing haproxy: apt-get install haproxy" >&2; exit 1; }
export PATH="$PATH:/usr/sbin"
ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet --bin byoc-gateway --example liverunner_quality
exec target/release/examples/liverunner_quality --seconds "$SECS" --clients "$CLIENTS" "$@"
