#!/usr/bin/env bash
# Delivery (queue-drain) throughput, Postfix and Posthorn side by side on
# loopback: fill each one's queue with MESSAGES x SIZE messages to one
# domain without delivering any, then let it deliver everything to
# Postfix's smtp-sink and time from "go" until the sink has received the
# last message. Prints messages/second per system and the ratio.
#
#   bench/delivery.sh [MESSAGES] [SIZE_BYTES]        # default 10000 x 5120
#   SYSTEMS=postfix bench/delivery.sh                # only one side
#
# Environment: SYSTEMS (default "postfix posthorn"), SESSIONS (smtp-source
# sessions used to fill the queue, default 20), TIMEOUT (seconds to wait for
# the sink, default 600), KEEP=1 (keep the temp dir with logs for a look),
# POSTHORN_DELIVERY (extra lines for Posthorn's [delivery] section, e.g.
# 'body_retention = "1h"'), DKIM (rsa, the default, or ed25519), BIN (a
# posthorn binary to run instead of building target/release/posthorn).
#
# Postfix: a private instance (bench/lib/postfix.sh: its own config, queue
# and data directories under a temp dir; the system instance is not used)
# with relayhost = [127.0.0.1]:SINK. Every message accepted by its smtpd goes
# on hold; the clock starts at `postsuper -H ALL` + `postqueue -f`.
# Concurrency is left at Postfix's defaults (printed at run time:
# default_destination_concurrency_limit = 20, initial_destination_concurrency
# = 5 with slow start, connection cache on demand), i.e. what an untuned
# Postfix relaying to one smarthost does; tuning one side and not the other
# would not be a fair comparison.
#
# Posthorn: a fresh store and the trusted-network setup of
# bench/smtp-source.sh, filled by a server running with [delivery] enabled =
# false, stopped (SIGTERM), then started again with enabled = true and the
# relay pointing at the sink; the clock starts when that server is spawned,
# so it includes Posthorn's startup. Its other [delivery] settings
# (connections per host and so on) stay at their defaults too. Afterwards `posthorn queue list
# --status delivered --json` must show every recipient delivered.
#
# The clock stops when smtp-sink has seen the final "." of message MESSAGES.
# smtp-sink -c prints "sess=N quit=N mesg=N" followed by CR to stdout on every
# "." and every disconnect, flushed each time; a small reader on a FIFO takes
# the time at which mesg reaches MESSAGES. Caveats: mesg counts messages
# whose data ended, before the 250 is sent and whoever sent them, so a
# message sent twice (a retry after a lost reply) counts twice; that is why
# the queue is also checked afterwards (and the sink's final count must be
# exactly MESSAGES). sess counts only sessions that have ended, so cached
# connections still open show up later. smtp-sink -M (exit after N
# messages) is not used: it exits before answering the last message, which
# the client then retries.
#
# The two runs are delivery_postfix and delivery_posthorn in
# bench/lib/delivery.sh, shared with bench/compare.sh (its scenario e).
#
# Needs root (Postfix's master) and the postfix package (installed with
# debconf "No configuration" if missing, like bench/smtp-source.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. bench/lib/common.sh
# shellcheck source-path=SCRIPTDIR source=lib/sink.sh
. bench/lib/sink.sh
# shellcheck source-path=SCRIPTDIR source=lib/postfix.sh
. bench/lib/postfix.sh
# shellcheck source-path=SCRIPTDIR source=lib/posthorn.sh
. bench/lib/posthorn.sh
# shellcheck source-path=SCRIPTDIR source=lib/delivery.sh
. bench/lib/delivery.sh

messages=${1:-10000}
size=${2:-5120}
sessions=${SESSIONS:-20}
systems=${SYSTEMS:-postfix posthorn}
timeout=${TIMEOUT:-600}
for s in $systems; do
  case $s in
    postfix | posthorn) ;;
    *) echo "SYSTEMS: unknown system '$s' (postfix, posthorn)" >&2; exit 2 ;;
  esac
done

postfix_install
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink
# BIN=path runs another build (e.g. an older commit's) instead.
if [ -z "${BIN:-}" ]; then
  BIN=target/release/posthorn
  if [[ " $systems " == *" posthorn "* ]]; then
    cargo build --release -q -p posthorn
  fi
fi

work=$(mktemp -d)
cleanup() {
  set +e
  posthorn_stop
  postfix_stop
  sink_stop
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "delivery: $messages messages x $size B to one domain, queue filled by $sessions smtp-source sessions, loopback smtp-sink"
for s in $systems; do
  "delivery_$s"
done

python3 - "$work/results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
rate = {}
print()
print(f"{'system':<10} {'messages':>9} {'seconds':>9} {'messages/s':>11}")
for system, n, start, end in rows:
    secs = float(end) - float(start)
    rate[system] = int(n) / secs
    print(f"{system:<10} {int(n):>9} {secs:>9.2f} {rate[system]:>11.0f}")
if "postfix" in rate and "posthorn" in rate:
    print(f"posthorn/postfix: {rate['posthorn'] / rate['postfix']:.2f}")
PY
