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
# 'body_retention = "1h"').
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
# Needs root (Postfix's master) and the postfix package (installed with
# debconf "No configuration" if missing, like bench/smtp-source.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/postfix.sh
. bench/lib/postfix.sh

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
BIN=target/release/posthorn
if [[ " $systems " == *" posthorn "* ]]; then
  cargo build --release -q -p posthorn
fi

work=$(mktemp -d)
server=""       # posthorn serve
sink_pid=""     # smtp-sink
reader_pid=""   # its counter reader
cleanup() {
  set +e
  [ -n "$server" ] && posthorn_stop
  postfix_stop
  sink_stop
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }

wait_for_port() { # PORT [PID]: until something accepts on 127.0.0.1:PORT
  local _
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.05
  done
  return 1
}

# The sink's counter reader: reads smtp-sink -c output from a FIFO, keeps
# the last "sess quit mesg" in STATE, and writes the time at which mesg
# first reached TARGET to DONE.
cat >"$work/sink-counter.py" <<'PY'
import os, re, sys, time
fifo, target, state, done = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pat = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
fd = os.open(fifo, os.O_RDONLY)
rest, last, reached, saved = b"", None, False, 0.0
put(state, "0 0 0\n")
while True:
    chunk = os.read(fd, 65536)
    if not chunk:
        break
    t = time.time()
    records = (rest + chunk).split(b"\r")
    rest = records.pop()
    for rec in reversed(records):
        m = pat.search(rec)
        if m:
            last = m
            break
    if last is None:
        continue
    if not reached and int(last.group(3)) >= target:
        reached = True
        put(done, f"{t:.6f}\n")
    if reached or t - saved > 0.1:
        put(state, " ".join(g.decode() for g in last.groups()) + "\n")
        saved = t
if last is not None:
    put(state, " ".join(g.decode() for g in last.groups()) + "\n")
PY

sink_dir=""
sink_start() { # PORT NAME: a fresh smtp-sink on 127.0.0.1:PORT, counting
  sink_dir=$work/sink-$2
  mkdir -p "$sink_dir"
  mkfifo "$sink_dir/fifo"
  python3 "$work/sink-counter.py" "$sink_dir/fifo" "$messages" "$sink_dir/state" "$sink_dir/done" &
  reader_pid=$!
  # -a -C -F: announce no AUTH, XCLIENT, XFORWARD (plain ESMTP with
  # PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, DSN). -u: required as root.
  # 1000: listen backlog.
  "$SMTP_SINK" -u nobody -c -a -C -F "127.0.0.1:$1" 1000 >"$sink_dir/fifo" 2>"$sink_dir/stderr" &
  sink_pid=$!
  wait_for_port "$1" "$sink_pid" || { echo "smtp-sink did not start:" >&2; cat "$sink_dir/stderr" >&2; return 1; }
}
sink_count() { # messages the sink has received so far
  local s=(0 0 0)
  [ -f "$sink_dir/state" ] && read -r -a s <"$sink_dir/state"
  echo "${s[2]}"
}
sink_sessions() { # sessions that have ended
  local s=(0 0 0)
  [ -f "$sink_dir/state" ] && read -r -a s <"$sink_dir/state"
  echo "${s[0]}"
}
sink_wait() { # prints the time at which the sink had received $messages
  local deadline
  deadline=$(($(date +%s) + timeout))
  while [ ! -f "$sink_dir/done" ]; do
    if ! kill -0 "$sink_pid" 2>/dev/null; then
      echo "smtp-sink exited after $(sink_count) messages:" >&2
      cat "$sink_dir/stderr" >&2
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "timeout: the sink has $(sink_count) of $messages messages after ${timeout}s" >&2
      return 1
    fi
    sleep 0.05
  done
  cat "$sink_dir/done"
}
sink_stop() {
  if [ -n "$sink_pid" ]; then
    kill "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
  fi
  if [ -n "$reader_pid" ]; then
    wait "$reader_pid" 2>/dev/null || true # it sees EOF once the sink is gone
  fi
  sink_pid="" reader_pid=""
}

fill() { # PORT: smtp-source, the same load for both systems
  local t0 t1
  t0=$(now)
  "$SMTP_SOURCE" -s "$sessions" -m "$messages" -l "$size" -S "delivery bench" \
    -f load@bench.test -t sink@bench-dest.test "127.0.0.1:$1"
  t1=$(now)
  python3 -c 'import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f"  filled: {sys.argv[3]} messages in {s:.1f} s ({int(sys.argv[3])/s:.0f}/s, not part of the result)")' "$t0" "$t1" "$messages"
}

result() { # SYSTEM START END
  echo "$1 $messages $2 $3" >>"$work/results"
  python3 -c 'import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f"  delivered: {sys.argv[3]} messages in {s:.2f} s, {int(sys.argv[3])/s:.0f} messages/s")' "$2" "$3" "$messages"
}

run_postfix() {
  local sink_port pf_port start released end left _
  echo "== postfix"
  sink_port=$(free_port)
  sink_start "$sink_port" postfix
  pf_port=$(free_port)
  postfix_setup "$work" "$pf_port" "$sink_port"
  postfix_hold_all # before start: every message smtpd accepts goes on hold
  postfix_start
  postfix_print_settings | sed 's/^/  /'
  fill "$pf_port"
  left=$(postfix_queue_count)
  if [ "$left" -ne "$messages" ] || [ "$(postfix_queue_count hold)" -ne "$messages" ]; then
    echo "postfix: $left queued, $(postfix_queue_count hold) on hold; expected $messages" >&2
    return 1
  fi
  if [ "$(sink_count)" -ne 0 ]; then
    echo "postfix: the sink got $(sink_count) messages while all mail was on hold" >&2
    return 1
  fi

  start=$(now)
  postfix_release_all
  released=$(now)
  end=$(sink_wait)
  result postfix "$start" "$end"
  python3 -c 'import sys; print(f"  (postsuper -H ALL + postqueue -f: {float(sys.argv[2])-float(sys.argv[1]):.2f} s of that)")' "$start" "$released"

  # The queue manager removes queue files after the replies: give it a moment.
  for _ in $(seq 600); do
    left=$(postfix_queue_count)
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  echo "  check: $left left in the queue, $(postfix_sent_count) logged status=sent, sink: $(sink_count) messages, $(sink_sessions) sessions ended"
  [ "$left" -eq 0 ] || { echo "postfix: $left messages still queued" >&2; return 1; }
  postfix_stop
  check_sink_exact postfix
  sink_stop
}

check_sink_exact() {
  sleep 0.2 # let the reader catch up with the last records
  if [ "$(sink_count)" -ne "$messages" ]; then
    echo "$1: the sink received $(sink_count) messages for $messages queued (duplicates?)" >&2
    return 1
  fi
}

posthorn_config() { # ENABLED SINK_PORT SMTP_PORT TLS_PORT
  cat >"$work/posthorn.toml" <<TOML
hostname = "bench.test"
[smtp]
implicit_tls = ["127.0.0.1:$4"]
starttls = ["127.0.0.1:$3"]
[[smtp.trusted_networks]]
network = "127.0.0.0/8"
account = "bench"
[limits]
new_connections_per_ip_per_minute = 0
[delivery]
enabled = $1
hostname = "bench.test"
${POSTHORN_DELIVERY:-}
[delivery.relay]
host = "127.0.0.1"
port = $2
tls = "none"
[log]
level = "warn"
TOML
}

posthorn_serve() { # LOG: start the server in the background, sets $server
  "$BIN" --config "$work/posthorn.toml" --data-dir "$work/posthorn" serve 2>>"$1" &
  server=$!
}

posthorn_stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

posthorn_delivered() { # recipients with status delivered
  "$BIN" --data-dir "$work/posthorn" queue list --status delivered --json |
    python3 -c 'import json, sys; print(sum(r["status"] == "delivered" for m in json.load(sys.stdin) for r in m["recipients"]))'
}

run_posthorn() {
  local sink_port port tls_port data=$work/posthorn log=$work/posthorn.log start end stored delivered _
  echo "== posthorn"
  sink_port=$(free_port)
  sink_start "$sink_port" posthorn
  port=$(free_port)
  tls_port=$(free_port)
  mkdir -p "$data"
  "$BIN" --data-dir "$data" account create bench >/dev/null
  "$BIN" --data-dir "$data" domain add bench.test --account bench --dkim "${DKIM:-rsa}" >/dev/null
  "$BIN" --data-dir "$data" sender add load@bench.test --account bench --password bench-password >/dev/null
  "$BIN" --data-dir "$data" account set bench messages_per_second 0 >/dev/null
  "$BIN" --data-dir "$data" account set bench pair_per_hour 0 >/dev/null

  # Accept and queue only.
  posthorn_config false "$sink_port" "$port" "$tls_port"
  posthorn_serve "$log"
  wait_for_port "$port" "$server" || { echo "posthorn did not start:" >&2; cat "$log" >&2; return 1; }
  fill "$port"
  posthorn_stop
  stored=$("$BIN" --data-dir "$data" queue list | wc -l)
  if [ "$stored" -ne "$messages" ]; then
    echo "posthorn: $stored messages in the store; expected $messages" >&2
    return 1
  fi
  if [ "$(sink_count)" -ne 0 ]; then
    echo "posthorn: the sink got $(sink_count) messages with [delivery] enabled = false" >&2
    return 1
  fi

  # Deliver.
  posthorn_config true "$sink_port" "$port" "$tls_port"
  echo "  [delivery] enabled = true, relay 127.0.0.1:$sink_port, tls = none"
  start=$(now)
  posthorn_serve "$log"
  end=$(sink_wait) || { cat "$log" >&2; return 1; }
  result posthorn "$start" "$end"

  delivered=0
  for _ in $(seq 60); do
    delivered=$(posthorn_delivered)
    [ "$delivered" -ge "$messages" ] && break
    sleep 1
  done
  echo "  check: $delivered recipients delivered in the store, sink: $(sink_count) messages, $(sink_sessions) sessions ended"
  posthorn_stop
  [ "$delivered" -eq "$messages" ] || { echo "posthorn: $delivered of $messages delivered" >&2; return 1; }
  check_sink_exact posthorn
  sink_stop
}

echo "delivery: $messages messages x $size B to one domain, queue filled by $sessions smtp-source sessions, loopback smtp-sink"
for s in $systems; do
  "run_$s"
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
