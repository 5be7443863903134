#!/usr/bin/env bash
# Postfix's smtp-source against a release build of Posthorn that delivers
# what it accepts to an smtp-sink at the same time (scenario c of
# bench/compare.sh, with smtp-source as the client). Prints the accept rate,
# the rate at which everything had reached the sink, Posthorn's CPU time,
# and the disk writes per second while it ran (vmstat's bo).
#
#   bench/accept-deliver.sh                       # 4,000 x 100 KB, 20 sessions, reuse
#   MESSAGES=10000 SIZE=5120 bench/accept-deliver.sh
#   DELIVERY=false bench/accept-deliver.sh        # accept only
#   REUSE=false SIZE=5120 MESSAGES=10000 bench/accept-deliver.sh   # one message per connection (compare.sh's a)
#   DKIM=ed25519 bench/accept-deliver.sh          # the key bench.test signs with
#   PERF=1 bench/accept-deliver.sh                # perf record -g of the server into perf.data
#   PERF=1 PERF_ARGS="--call-graph dwarf -F 299" bench/accept-deliver.sh   # other perf record options
#
# Needs: postfix (smtp-source, smtp-sink), vmstat; perf for PERF=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. bench/lib/common.sh
# shellcheck source-path=SCRIPTDIR source=lib/sink.sh
. bench/lib/sink.sh
# shellcheck source-path=SCRIPTDIR source=lib/posthorn.sh
. bench/lib/posthorn.sh

messages=${MESSAGES:-4000}
size=${SIZE:-102400}
delivery=${DELIVERY:-true}
reuse=""
[ "${REUSE:-true}" = true ] && reuse=-d
timeout=${TIMEOUT:-300}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p posthorn
  BIN=target/release/posthorn
fi
work=$(mktemp -d)
vm=""
trap 'posthorn_stop; sink_stop; [ -n "$vm" ] && kill "$vm" 2>/dev/null; rm -rf "$work"' EXIT

posthorn_init
sink_port=$(free_port) port=$(free_port) tls_port=$(free_port)
SINK_TARGET=$messages
sink_start "$sink_port" relay
posthorn_config "$delivery" "$sink_port" "$port" "$tls_port"
posthorn_serve "$work/server.log"
wait_for_port "$port" "$server"
perf_pid=""
if [ "${PERF:-0}" = 1 ]; then
  perf record ${PERF_ARGS:--F 999 -g} -p "$server" -o perf.data 2>/dev/null &
  perf_pid=$!
fi
vmstat 1 >"$work/vmstat" &
vm=$!
start=$(now)
/usr/sbin/smtp-source -s 20 -m "$messages" -l "$size" -S "load test" -f load@bench.test \
  -t sink@example.net $reuse "127.0.0.1:$port"
accepted=$(now)
if [ "$delivery" = true ]; then sink_wait >/dev/null; fi
end=$(now)
kill "$vm"; vm=""
if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$server/stat")
bo=$(awk 'NR > 3 { s += $10; n++ } END { print n ? s / n : 0 }' "$work/vmstat")
python3 - "$start" "$accepted" "$end" "$messages" "$size" "$cpu" "$bo" "$delivery" <<'PY'
import sys
start, accepted, end, n, size, cpu, bo = map(float, sys.argv[1:8])
line = f"{int(n)} x {int(size)} B, 20 sessions: accepted at {n / (accepted - start):.0f}/s"
if sys.argv[8] == "true":
    line += f", all at the sink at {n / (end - start):.0f}/s"
line += (f"; Posthorn CPU {cpu:.2f} s ({cpu / (end - start):.2f} cores);"
         f" disk writes {bo / 1024:.0f} MiB/s ({bo * (end - start) / n:.0f} KiB per message)")
print(line)
PY
stored=$(posthorn_stored)
[ "$stored" -eq "$messages" ] || { echo "error: $messages sent, $stored stored" >&2; exit 1; }
