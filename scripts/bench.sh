#!/usr/bin/env bash
# The performance suite (not part of the tests): builds the release relay, agent and bench,
# then runs `flightdeck-bench all`, which prints one table of our figures against nats-server
# and git measured in the same run, and the targets. See BENCHMARKS.md.
#   scripts/bench.sh            # full suite, under 10 minutes
#   scripts/bench.sh --quick    # rougher figures, under 3 minutes
#   scripts/bench.sh --json out.json
# Needs git and nats-server (Debian: apt-get install nats-server) on PATH, and for the cross-node
# figure redis-server and PostgreSQL's initdb/pg_ctl (apt-get install redis-server postgresql).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
command -v nats-server >/dev/null || { echo "bench: nats-server not found (apt-get install nats-server)" >&2; exit 1; }
echo "==> building release binaries"
(cd "$ROOT" && cargo build --release -p flightdeck-relay -p flightdeck-agent-core -p flightdeck-bench)
exec "$TARGET/release/flightdeck-bench" all "$@"
