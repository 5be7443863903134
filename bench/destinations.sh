#!/usr/bin/env bash
# The drain of ten destinations, one of them a tarpit (its final reply 30 s
# late): the nine healthy destinations' throughput with the tarpit against
# the same drain without it (issue 19's target: within 10 %). Real server
# (release build), real DNS server and sinks on loopback (the tarpit on
# 127.0.0.2), messages queued while delivery is off, then delivery on.
#
#   bench/destinations.sh                 # 9 x 300 messages, 3 rounds
#   DRAIN_PER_DOMAIN=1000 DRAIN_ROUNDS=5 bench/destinations.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DRAIN_PER_DOMAIN="${DRAIN_PER_DOMAIN:-300}" DRAIN_ROUNDS="${DRAIN_ROUNDS:-3}"
echo "host: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
cargo test --release -p posthorn --test destinations -- --ignored --nocapture drain_bench 2>&1 |
  grep -E '^drain of|^round|panicked|error' || true
