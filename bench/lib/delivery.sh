# shellcheck shell=bash
# shellcheck disable=SC2154 # work, messages and the like are set by the sourcing script
# The delivery (queue-drain) benchmark, sourced by bench/delivery.sh and
# bench/compare.sh (scenario e). Needs bench/lib/common.sh, sink.sh,
# postfix.sh and posthorn.sh.
#
#   delivery_postfix      # fill a private Postfix's queue on hold, release, time the drain
#   delivery_posthorn     # fill Posthorn with delivery off, restart with it on, time the drain
#
# Each appends "SYSTEM MESSAGES START END" to $work/results and prints its
# figures and checks. Globals read: work, messages, size, sessions
# (smtp-source sessions that fill the queue), timeout, BIN, SMTP_SOURCE, and
# what posthorn.sh reads (DKIM, POSTHORN_DELIVERY, ...).
#
# Hooks a caller may redefine after sourcing: delivery_timed_begin SYSTEM
# and delivery_timed_end SYSTEM run right after the clock starts and right
# after it stops (bench/compare.sh samples RSS between them);
# delivery_fail MESSAGE is called when a check fails and by default prints
# it and fails (return 1), so the caller stops.
#
# See bench/delivery.sh for what is measured and how.

SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}

delivery_timed_begin() { :; }
delivery_timed_end() { :; }
delivery_fail() {
  echo "$*" >&2
  return 1
}

_delivery_fill() { # PORT: smtp-source, the same load for both systems
  local t0 t1
  t0=$(now)
  "$SMTP_SOURCE" -s "$sessions" -m "$messages" -l "$size" -S "delivery bench" \
    -f load@bench.test -t sink@bench-dest.test "127.0.0.1:$1"
  t1=$(now)
  python3 -c 'import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f"  filled: {sys.argv[3]} messages in {s:.1f} s ({int(sys.argv[3])/s:.0f}/s, not part of the result)")' "$t0" "$t1" "$messages"
}

_delivery_result() { # SYSTEM START END
  echo "$1 $messages $2 $3" >>"$work/results"
  python3 -c 'import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f"  delivered: {sys.argv[3]} messages in {s:.2f} s, {int(sys.argv[3])/s:.0f} messages/s")' "$2" "$3" "$messages"
}

_delivery_check_sink_exact() {
  sleep 0.2 # let the reader catch up with the last records
  if [ "$(sink_count)" -ne "$messages" ]; then
    delivery_fail "$1: the sink received $(sink_count) messages for $messages queued (duplicates?)" || return 1
  fi
}

delivery_postfix() {
  local sink_port pf_port start released end left _
  echo "== postfix"
  sink_port=$(free_port)
  sink_start "$sink_port" postfix
  pf_port=$(free_port)
  postfix_setup "$work" "$pf_port" "$sink_port"
  postfix_hold_all # before start: every message smtpd accepts goes on hold
  postfix_start
  postfix_print_settings | sed 's/^/  /'
  _delivery_fill "$pf_port"
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
  delivery_timed_begin postfix
  postfix_release_all
  released=$(now)
  end=$(sink_wait)
  delivery_timed_end postfix
  _delivery_result postfix "$start" "$end"
  python3 -c 'import sys; print(f"  (postsuper -H ALL + postqueue -f: {float(sys.argv[2])-float(sys.argv[1]):.2f} s of that)")' "$start" "$released"

  # The queue manager removes queue files after the replies: give it a moment.
  for _ in $(seq 600); do
    left=$(postfix_queue_count)
    [ "$left" -eq 0 ] && break
    sleep 0.1
  done
  echo "  check: $left left in the queue, $(postfix_sent_count) logged status=sent, sink: $(sink_count) messages, $(sink_sessions) sessions ended"
  if [ "$left" -ne 0 ]; then
    delivery_fail "postfix: $left messages still queued" || return 1
  fi
  postfix_stop
  _delivery_check_sink_exact postfix || return 1
  sink_stop
}

delivery_posthorn() {
  local sink_port port tls_port log=$work/posthorn.log start end stored delivered _
  echo "== posthorn"
  sink_port=$(free_port)
  sink_start "$sink_port" posthorn
  port=$(free_port)
  tls_port=$(free_port)
  posthorn_init

  # Accept and queue only.
  posthorn_config false "$sink_port" "$port" "$tls_port"
  posthorn_serve "$log"
  wait_for_port "$port" "$server" || { echo "posthorn did not start:" >&2; cat "$log" >&2; return 1; }
  _delivery_fill "$port"
  posthorn_stop
  stored=$(posthorn_stored)
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
  delivery_timed_begin posthorn
  end=$(sink_wait) || { cat "$log" >&2; return 1; }
  delivery_timed_end posthorn
  _delivery_result posthorn "$start" "$end"

  delivered=0
  for _ in $(seq 60); do
    delivered=$(posthorn_delivered)
    [ "$delivered" -ge "$messages" ] && break
    sleep 1
  done
  echo "  check: $delivered recipients delivered in the store, sink: $(sink_count) messages, $(sink_sessions) sessions ended"
  posthorn_stop
  if [ "$delivered" -ne "$messages" ]; then
    delivery_fail "posthorn: $delivered of $messages delivered" || return 1
  fi
  _delivery_check_sink_exact posthorn || return 1
  sink_stop
}
