# shellcheck shell=bash
# shellcheck disable=SC2154 # work, messages and the like are set by the sourcing script
# A Posthorn server for benchmarks, sourced by bench scripts
# (bench/delivery.sh, bench/compare.sh). Needs bench/lib/common.sh.
#
#   posthorn_init                 # fresh store in $work/posthorn: account bench,
#                                 # domain bench.test, sender load@bench.test
#   posthorn_config ENABLED SINK_PORT SMTP_PORT TLS_PORT   # writes $work/posthorn.toml
#   posthorn_serve LOG            # in the background; sets $server
#   posthorn_stop                 # SIGTERM and wait; safe in an EXIT trap
#   posthorn_stored               # messages in the store (any status)
#   posthorn_delivered            # recipients with status delivered
#
# Globals read: work (a temp dir), BIN (the posthorn binary), DKIM (key
# type of bench.test: rsa, the default, or ed25519), LIMIT (the account's
# messages_per_second and pair_per_hour, default 0 = no limit; LIMIT=N keeps
# the limiter running every check). For posthorn_config: POSTHORN_TRUSTED
# (default 1: [[smtp.trusted_networks]] maps 127.0.0.0/8 to the account, as
# Postfix's mynetworks does; 0: every client must AUTH), POSTHORN_SMTP and
# POSTHORN_LIMITS (extra lines for [smtp] and [limits]), POSTHORN_DELIVERY
# (extra lines for [delivery], e.g. 'body_retention = "1h"'),
# POSTHORN_TLS_CERT and POSTHORN_TLS_KEY (PEM files; default: the
# certificate Posthorn generates), POSTHORN_LOG (default warn),
# POSTHORN_STORE (lines for a [store] section, e.g. 'backend = "postgres"'
# and its url; default none: the embedded store in $work/posthorn) and
# POSTHORN_EXTRA (more TOML at the end, e.g. [cluster] or [ratelimit]).
# With POSTHORN_STORE set, the admin commands (posthorn_init,
# posthorn_stored, posthorn_delivered, posthorn_cli) read
# $work/posthorn.toml too, so call posthorn_config before posthorn_init.
#
# Delivery goes to [delivery.relay] 127.0.0.1:SINK_PORT without TLS; with
# ENABLED = true the server delivers what it accepts at once.

server="" # posthorn serve

posthorn_cli() { # ARGS...: an admin command on this server's store
  if [ -n "${POSTHORN_STORE:-}" ]; then
    "$BIN" --config "$work/posthorn.toml" --data-dir "$work/posthorn" "$@"
  else
    "$BIN" --data-dir "$work/posthorn" "$@"
  fi
}

posthorn_init() {
  local data=$work/posthorn
  mkdir -p "$data"
  posthorn_cli account create bench >/dev/null
  posthorn_cli domain add bench.test --account bench --dkim "${DKIM:-rsa}" >/dev/null
  posthorn_cli sender add load@bench.test --account bench --password bench-password >/dev/null
  # Lift the account's rate limits: the load goes to one recipient, fast.
  posthorn_cli account set bench messages_per_second "${LIMIT:-0}" >/dev/null
  posthorn_cli account set bench pair_per_hour "${LIMIT:-0}" >/dev/null
}

posthorn_config() { # ENABLED SINK_PORT SMTP_PORT TLS_PORT
  local trusted="" tls="" store=""
  if [ "${POSTHORN_TRUSTED:-1}" = 1 ]; then
    trusted=$'[[smtp.trusted_networks]]\nnetwork = "127.0.0.0/8"\naccount = "bench"'
  fi
  if [ -n "${POSTHORN_TLS_CERT:-}" ]; then
    tls=$(printf '[tls]\ncert = "%s"\nkey = "%s"' "$POSTHORN_TLS_CERT" "$POSTHORN_TLS_KEY")
  fi
  if [ -n "${POSTHORN_STORE:-}" ]; then
    store=$(printf '[store]\n%s' "$POSTHORN_STORE")
  fi
  cat >"$work/posthorn.toml" <<TOML
hostname = "bench.test"
[smtp]
implicit_tls = ["127.0.0.1:$4"]
starttls = ["127.0.0.1:$3"]
${POSTHORN_SMTP:-}
$trusted
[limits]
new_connections_per_ip_per_minute = 0
${POSTHORN_LIMITS:-}
[delivery]
enabled = $1
hostname = "bench.test"
${POSTHORN_DELIVERY:-}
[delivery.relay]
host = "127.0.0.1"
port = $2
tls = "none"
$tls
[log]
level = "${POSTHORN_LOG:-warn}"
TOML
  [ -z "$store" ] || printf '%s\n' "$store" >>"$work/posthorn.toml"
  [ -z "${POSTHORN_EXTRA:-}" ] || printf '%s\n' "$POSTHORN_EXTRA" >>"$work/posthorn.toml"
}

posthorn_serve() { # LOG: start the server in the background, sets $server
  "$BIN" --config "$work/posthorn.toml" --data-dir "$work/posthorn" serve 2>>"$1" &
  server=$!
}

posthorn_stop() {
  [ -n "$server" ] || return 0
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

posthorn_stored() { # messages in the store, whatever their recipients' status
  posthorn_cli queue list | wc -l
}

posthorn_delivered() { # recipients with status delivered
  posthorn_cli queue list --status delivered --json |
    python3 -c 'import json, sys; print(sum(r["status"] == "delivered" for m in json.load(sys.stdin) for r in m["recipients"]))'
}
