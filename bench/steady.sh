#!/usr/bin/env bash
# Steady traffic instead of a burst: posthorn-loadgen offers 100 KB messages
# at a fixed rate (plain SMTP, trusted network, 20 reused sessions,
# PIPELINING) to a release build of Posthorn that delivers them to an
# smtp-sink as they come. Prints Posthorn's CPU per message and the whole
# machine's (from /proc/stat: the kernel's writeback and journal threads
# count there, not in Posthorn's), and how many spool files are left.
#
# bench/accept-deliver.sh measures a burst: every message is accepted before
# most are delivered, so nothing is purged while it runs. Here messages are
# delivered and their contents purged (body_retention = 0, once a second)
# while new ones arrive, which is what a server with steady traffic does all
# day: the spool's dead files are written again (crates/store/src/spool.rs).
#
#   bench/steady.sh                           # 3,000 x 100 KB offered at 300/s
#   RATE=500 MESSAGES=5000 SIZE=5120 bench/steady.sh
#
# Needs: postfix (smtp-sink); posthorn-loadgen (built with the server).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. bench/lib/common.sh
# shellcheck source-path=SCRIPTDIR source=lib/sink.sh
. bench/lib/sink.sh
# shellcheck source-path=SCRIPTDIR source=lib/posthorn.sh
. bench/lib/posthorn.sh

messages=${MESSAGES:-3000}
size=${SIZE:-102400}
rate=${RATE:-300}
timeout=${TIMEOUT:-300}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p posthorn -p posthorn-loadgen
  BIN=target/release/posthorn
fi
LOADGEN=${LOADGEN:-$(dirname "$BIN")/posthorn-loadgen}
work=$(mktemp -d)
trap 'posthorn_stop; sink_stop; rm -rf "$work"' EXIT

busy() { # jiffies the machine spent busy and in all, since boot
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

posthorn_init
sink_port=$(free_port) port=$(free_port) tls_port=$(free_port)
SINK_TARGET=$messages
sink_start "$sink_port" relay
posthorn_config true "$sink_port" "$port" "$tls_port"
posthorn_serve "$work/server.log"
wait_for_port "$port" "$server"
read -r busy0 _ < <(busy)
start=$(now)
"$LOADGEN" --server "127.0.0.1:$port" --sessions 20 --messages "$messages" --size "$size" \
  --reuse --pipelining --rate "$rate" --json >"$work/loadgen.json"
sink_wait >/dev/null
end=$(now)
read -r busy1 _ < <(busy)
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$server/stat")
files=$(find "$work/posthorn/spool" -type f | wc -l)
python3 - "$messages" "$size" "$rate" "$start" "$end" "$cpu" "$busy0" "$busy1" "$files" <<'PY'
import os, sys
n, size, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
start, end, cpu = map(float, sys.argv[4:7])
busy = (int(sys.argv[8]) - int(sys.argv[7])) / os.sysconf("SC_CLK_TCK")
print(f"{n} x {size} B offered at {rate}/s: all at the sink at {n / (end - start):.0f}/s;"
      f" Posthorn CPU {cpu:.2f} s ({cpu * 1e6 / n:.0f} us a message);"
      f" the machine busy {busy:.2f} s ({busy * 1e6 / n:.0f} us a message, client and sink included);"
      f" spool files left {sys.argv[9]}")
PY
stored=$(posthorn_stored)
[ "$stored" -eq "$messages" ] || { echo "error: $messages sent, $stored stored" >&2; exit 1; }
