# shellcheck shell=bash
# shellcheck disable=SC2154 # work, messages and the like are set by the sourcing script
# Postfix's smtp-sink with a message counter, sourced by bench scripts
# (bench/delivery.sh, bench/compare.sh). Needs bench/lib/common.sh.
#
#   sink_start PORT NAME        # a fresh smtp-sink on 127.0.0.1:PORT; files in $work/sink-NAME
#   sink_count                  # messages received so far
#   sink_sessions               # sessions that have ended
#   sink_wait                   # prints the time at which SINK_TARGET messages had arrived
#   sink_reached                # that time if they have arrived, else nothing (no waiting)
#   sink_stop                   # idempotent; safe in an EXIT trap
#
# Globals read: work (a temp dir), SINK_TARGET (default $messages: the
# count sink_wait waits for), timeout (seconds sink_wait waits, default
# 600), SINK_OPTS (smtp-sink flags, default "-a -C -F": announce no AUTH,
# XCLIENT, XFORWARD, i.e. plain ESMTP with PIPELINING, 8BITMIME,
# ENHANCEDSTATUSCODES, DSN; leave out -a to announce AUTH, which smtp-sink
# then accepts whatever the credentials), SMTP_SINK. Sets sink_pid.
#
# smtp-sink -c prints "sess=N quit=N mesg=N" followed by CR to stdout on every
# "." and every disconnect, flushed each time; a small reader on a FIFO keeps
# the last record and takes the time at which mesg reaches the target.
# Caveats: mesg counts messages whose data ended, before the 250 is sent and
# whoever sent them, so a message sent twice (a retry after a lost reply)
# counts twice. sess counts only sessions that have ended, so cached
# connections still open show up later. smtp-sink -M (exit after N
# messages) is not used: it exits before answering the last message, which
# the client then retries.

SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
sink_pid=""     # smtp-sink
reader_pid=""   # its counter reader
sink_dir=""

_sink_counter_script() {
  cat >"$work/sink-counter.py" <<'PY'
import os, re, select, sys, time
fifo, target, state, done = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pat = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
fd = os.open(fifo, os.O_RDONLY)
rest, last, reached, saved = b"", None, False, 0.0
put(state, "0 0 0\n")
pending = False
while True:
    # Nothing more for 0.1 s: write the last record, so a reader polling the
    # state sees the final count without waiting for the sink to exit.
    if not select.select([fd], [], [], 0.1)[0]:
        if pending:
            put(state, " ".join(g.decode() for g in last.groups()) + "\n")
            saved, pending = time.time(), False
        continue
    chunk = os.read(fd, 65536)
    if not chunk:
        break
    t = time.time()
    # smtp-sink writes a record per message: reading each one as it comes
    # woke this reader thousands of times a second, CPU taken from the
    # systems measured. Let 5 ms of them gather (t above is when the chunk
    # was read, so the time the target was reached is at most 5 ms late).
    time.sleep(0.005)
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
        saved, pending = t, False
    else:
        pending = True
if last is not None:
    put(state, " ".join(g.decode() for g in last.groups()) + "\n")
PY
}

sink_start() { # PORT NAME
  sink_dir=$work/sink-$2
  mkdir -p "$sink_dir"
  [ -f "$work/sink-counter.py" ] || _sink_counter_script
  mkfifo "$sink_dir/fifo"
  python3 "$work/sink-counter.py" "$sink_dir/fifo" "${SINK_TARGET:-$messages}" "$sink_dir/state" "$sink_dir/done" &
  reader_pid=$!
  # -u: required as root. 1000: listen backlog. -m: at most this many
  # sessions at once (default 256).
  # shellcheck disable=SC2086 # SINK_OPTS is a list of flags
  "$SMTP_SINK" -u nobody -c ${SINK_OPTS--a -C -F} -m 1024 "127.0.0.1:$1" 1000 >"$sink_dir/fifo" 2>"$sink_dir/stderr" &
  sink_pid=$!
  wait_for_port "$1" "$sink_pid" || { echo "smtp-sink did not start:" >&2; cat "$sink_dir/stderr" >&2; return 1; }
}

_sink_state() {
  local s=(0 0 0)
  [ -n "$sink_dir" ] && [ -f "$sink_dir/state" ] && read -r -a s <"$sink_dir/state"
  echo "${s[@]}"
}
sink_count() { local s; read -r -a s <<<"$(_sink_state)"; echo "${s[2]}"; }
sink_sessions() { local s; read -r -a s <<<"$(_sink_state)"; echo "${s[0]}"; }

# Polls with builtins only (a read with a timeout on a FIFO nobody writes,
# SECONDS, kill -0): the loop ran date and sleep 20 times a second beside
# the delivery being timed. The poll interval does not change the figure:
# the counter's reader takes the time the target was reached.
sink_wait() {
  local deadline target=${SINK_TARGET:-$messages} tick
  deadline=$((SECONDS + ${timeout:-600}))
  [ -p "$sink_dir/tick" ] || mkfifo "$sink_dir/tick"
  exec {tick}<>"$sink_dir/tick"
  while [ ! -f "$sink_dir/done" ]; do
    if ! kill -0 "$sink_pid" 2>/dev/null; then
      exec {tick}>&-
      echo "smtp-sink exited after $(sink_count) messages:" >&2
      cat "$sink_dir/stderr" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      exec {tick}>&-
      echo "timeout: the sink has $(sink_count) of $target messages after ${timeout:-600}s" >&2
      return 1
    fi
    read -r -t 0.1 -u "$tick" _ || true
  done
  exec {tick}>&-
  cat "$sink_dir/done"
}

sink_reached() {
  [ -n "$sink_dir" ] && [ -f "$sink_dir/done" ] && cat "$sink_dir/done"
  return 0
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
