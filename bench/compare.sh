#!/usr/bin/env bash
# Posthorn, Postfix and smtp-sink side by side on loopback: the same
# scenarios against each, one table (text on stdout, markdown in $OUT).
#
#   bench/compare.sh                                  # everything, defaults (~10 min on 2 cores)
#   MESSAGES=500 bench/compare.sh                     # a quick check
#   SCENARIOS="a b e" SYSTEMS="postfix posthorn" bench/compare.sh
#
# Systems (SYSTEMS, default "sink postfix posthorn"):
#   sink      Postfix's smtp-sink alone: answers and forgets, the no-durability
#             ceiling of an SMTP exchange on this machine. It has no TLS, so
#             the STARTTLS scenarios run against it in plain text (AUTH is
#             announced and accepts anything).
#   postfix   a private Postfix instance from Debian's packages
#             (bench/lib/postfix.sh: its own config, queue and data directories
#             in a temp dir; the system instance is never read, started or
#             stopped), relaying everything at once to an smtp-sink. Defaults
#             everywhere but in_flow_delay = 0 (see postfix.sh). TLS: the same
#             generated P-256 certificate as Posthorn, AUTH only after
#             STARTTLS. AUTH: Cyrus SASL, a private sasldb (auxprop), PLAIN
#             and LOGIN; in the AUTH scenarios only logged-in clients may relay.
#   posthorn  target/release/posthorn with a fresh embedded store per
#             scenario, the account's limits lifted (messages_per_second,
#             pair_per_hour, connections_per_user, api_calls_per_minute = 0)
#             and the per-address connection caps off ([limits]
#             connections_per_ip = 0, new_connections_per_ip_per_minute = 0),
#             delivering at once to an smtp-sink through [delivery.relay]
#             (bench/lib/posthorn.sh), signing with DKIM (DKIM=rsa, the default,
#             or ed25519). The 250 after the data waits for the fsync as always.
#
# Scenarios (SCENARIOS, default "a b b1 c d g e f"):
#   a   20 sessions x 5 KB, plain, one message per connection, no AUTH:
#       Postfix's smtp-source as the client; 127.0.0.0/8 is a trusted
#       network (Postfix: mynetworks; Posthorn: [[smtp.trusted_networks]]).
#       smtp-source reports no latencies (p50/p99 "-").
#   b   20 sessions x 5 KB, STARTTLS + AUTH PLAIN, connection reuse,
#       PIPELINING: posthorn-loadgen. No trusted network.
#   b1  (shown as b') as b, one message per connection (a TLS handshake and
#       a login per message); MESSAGES_CONN_AUTH messages (default 2000).
#   c   20 sessions x 100 KB, plain, trusted network, connection reuse,
#       PIPELINING: posthorn-loadgen.
#   d   200 sessions x 5 KB, plain, trusted network, one message per
#       connection: posthorn-loadgen.
#   g   as b, but offered at 1,000 messages/s (loadgen --rate 1000): the
#       latency at a fixed load.
#   e   delivery: MESSAGES x 5 KB queued while delivery is off/on hold,
#       then drained into smtp-sink (bench/lib/delivery.sh, the same runs as
#       bench/delivery.sh); Postfix and Posthorn only.
#   f   memory: IDLE (10,000) idle connections held open to Posthorn (caps
#       lifted, idle_timeout_secs raised), RSS per connection = (RSS with
#       them - RSS before) / IDLE, and a normal client (STARTTLS + AUTH, 10
#       messages) must still get its messages accepted meanwhile. Postfix
#       runs one smtpd process per connection under default_process_limit =
#       100, so it gets IDLE_POSTFIX (90) connections: its figure is per
#       smtpd process, as PSS (shared pages divided among the processes) and
#       as the sum of RSS.
#
# Columns: accept messages/s from the client (loadgen's own clock; for
# smtp-source the wall clock around it); end-to-end messages/s (Postfix and
# Posthorn in the accept scenarios: the messages / the time from the client's
# start to the moment the relay's smtp-sink counted the last of them; each
# run waits for its system's queue to drain before the next starts); p50/p99
# of MAIL-to-final-reply latency from loadgen; peak RSS of the server sampled
# every 200 ms during the measured part (Postfix: the sum over its master and
# every child; Posthorn: the one process; sink: smtp-sink); Posthorn/Postfix
# ratios of accept and of end-to-end messages/s, Posthorn/sink of accept.
# With DKIM=rsa, "RSA cores": Posthorn's end-to-end rate (in e its drain
# rate) over one core's RSA-2048 signatures per second from
# `openssl speed -seconds 2 rsa2048` at the start (one signature a message):
# how many cores' worth of signing the rate needs, against the nproc the
# header names.
#
# Checks: after each run, what the client says was accepted must equal what
# the server stored (Posthorn: `posthorn queue list`) or passed on (Postfix,
# after its queue drained, and sink: smtp-sink's count), and the client must
# have seen no non-2xx reply and no connection error (loadgen counts them by
# code). Anything else becomes a WARNING line under the table. Posthorn's
# later delivery to the sink is checked too (every recipient delivered).
#
# Environment:
#   MESSAGES            per accept scenario (default 10000)
#   MESSAGES_LARGE      scenario c (default 2000, or MESSAGES if smaller)
#   MESSAGES_CONN_AUTH  scenario b' (the same default)
#   RATE_MESSAGES       scenario g (default MESSAGES)
#   DELIVERY_MESSAGES   scenario e (default MESSAGES)
#   IDLE, IDLE_POSTFIX  scenario f (default 10000 and 90)
#   SCENARIOS, SYSTEMS  what to run (see above)
#   ROUNDS              run each scenario's systems this many times, taking
#                       turns (sink, postfix, posthorn, sink, ...), and show
#                       the round with the median messages/s of each system
#                       and the median of its end-to-end rates (default 1). On a VM whose host takes CPU back, one
#                       run of each can land in a slow minute; f runs once.
#   OUT                 the markdown table (default bench/results/compare-DATE.md;
#                       the full log goes next to it as .log)
#   BIN                 a posthorn binary to run instead of building one; then
#                       LOADGEN (default: posthorn-loadgen next to it, else built)
#                       and POSTHORN_COMMIT (what to call it in the output)
#   PERF                a file: `perf record` of Posthorn's server from its first
#                       session to the last message at the sink, in each accept
#                       scenario (the last one run overwrites it)
#   PERF_ARGS           perf record's options (default --call-graph dwarf,16384 -F 299)
#   DKIM                rsa (default) or ed25519, the key of bench.test
#   POSTFIX_DKIM=1      Postfix signs too: an OpenDKIM milter (RSA-2048,
#                       relaxed/relaxed; bench/lib/postfix.sh postfix_dkim) in
#                       the accept scenarios, so both do the same work per
#                       message. Not in e: Postfix would sign while its queue
#                       is filled, before the timed drain.
#   TIMEOUT             seconds to wait for a queue to drain (default 600)
#   LIMIT_SECS          loadgen stops starting messages after this long (default
#                       180, a safety net for a slow system; a run it cuts short
#                       gets a WARNING)
#   KEEP=1              keep the temp dir (configs, server logs, loadgen JSON)
#
# Needs root (Postfix's master, ulimit -n), Debian's postfix, sasl2-bin and
# libsasl2-modules (installed if missing, postfix with debconf "No
# configuration"), openssl, python3. Stops everything it started on exit,
# Ctrl-C or failure.
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

MESSAGES=${MESSAGES:-10000}
MESSAGES_LARGE=${MESSAGES_LARGE:-$((MESSAGES < 2000 ? MESSAGES : 2000))}
MESSAGES_CONN_AUTH=${MESSAGES_CONN_AUTH:-$((MESSAGES < 2000 ? MESSAGES : 2000))}
LIMIT_SECS=${LIMIT_SECS:-180}
DELIVERY_MESSAGES=${DELIVERY_MESSAGES:-$MESSAGES}
RATE_MESSAGES=${RATE_MESSAGES:-$MESSAGES}
IDLE=${IDLE:-10000}
IDLE_POSTFIX=${IDLE_POSTFIX:-90}
SCENARIOS=${SCENARIOS:-a b b1 c d g e f}
ROUNDS=${ROUNDS:-1}
SYSTEMS=${SYSTEMS:-sink postfix posthorn}
timeout=${TIMEOUT:-600}
stamp=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/results/compare-$stamp.md}
LOG=${OUT%.md}.log

for s in $SYSTEMS; do
  case $s in
    sink | postfix | posthorn) ;;
    *) echo "SYSTEMS: unknown system '$s' (sink, postfix, posthorn)" >&2; exit 2 ;;
  esac
done
for s in $SCENARIOS; do
  case $s in
    a | b | b1 | c | d | e | f | g) ;;
    *) echo "SCENARIOS: unknown scenario '$s' (a b b1 c d g e f)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/compare.sh must run as root (Postfix's master, ulimit -n)" >&2
  exit 1
fi
has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# 10,000 idle connections need as many descriptors in the server and in the
# client helper (root may raise the hard limit).
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE + 500)) ]; then
  echo "ulimit -n is $(ulimit -n) (the hard limit, which this container does not let root raise): IDLE=$IDLE becomes $(($(ulimit -n) - 500))" >&2
  IDLE=$(($(ulimit -n) - 500))
fi

postfix_install_sasl
command -v openssl >/dev/null || {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
}
SMTP_SOURCE=/usr/sbin/smtp-source
SMTP_SINK=/usr/sbin/smtp-sink

built=""
if [ -z "${BIN:-}" ]; then
  built=1
  echo "building posthorn and posthorn-loadgen (release)..." >&2
  cargo build --release -q -p posthorn -p posthorn-loadgen
  BIN=target/release/posthorn
  LOADGEN=${LOADGEN:-target/release/posthorn-loadgen}
fi
if [ -z "${LOADGEN:-}" ]; then
  LOADGEN=$(dirname "$BIN")/posthorn-loadgen
  if [ ! -x "$LOADGEN" ]; then
    cargo build --release -q -p posthorn-loadgen
    LOADGEN=target/release/posthorn-loadgen
  fi
fi
BIN=$(realpath "$BIN")
LOADGEN=$(realpath "$LOADGEN")

mkdir -p "$(dirname "$OUT")"
: >"$LOG"
work_root=$(mktemp -d)
chmod go+x "$work_root" # Postfix's daemons open paths under here
work=$work_root
rows=$work_root/rows.tsv
warnings=$work_root/warnings.txt
: >"$rows"
: >"$warnings"
client_pid="" sampler_pid="" idle_pid=""

cleanup() {
  set +e
  for p in $client_pid $idle_pid; do
    kill -TERM "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  [ -n "$sampler_pid" ] && { kill -TERM "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null; }
  posthorn_stop
  postfix_stop
  sink_stop
  if [ -n "${KEEP:-}" ]; then echo "kept $work_root" >&2; else rm -rf "$work_root"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

log() { echo "$*" >>"$LOG"; }
say() { echo "$*" >&2; echo "$*" >>"$LOG"; }
warn() { # SCENARIO SYSTEM TEXT
  say "  WARNING: $3"
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$warnings"
}
row() { # SCENARIO SYSTEM RATE P50 P99 PEAK_KIB NOTE [E2E_RATE]
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:--}" >>"$rows"
}

# run_client OUT ERR CMD...: a client in the background (so a signal reaches
# the traps at once), waited for; its exit status.
run_client() {
  local out=$1 err=$2 rc=0
  shift 2
  "$@" >"$out" 2>"$err" &
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  return "$rc"
}

rss_start() { # PID...: sample the RSS of these process trees
  rm -f "$work/rss.peak"
  python3 bench/lib/rss.py sample "$work/rss.peak" "$@" &
  sampler_pid=$!
}
rss_peak=0
rss_stop() { # sets rss_peak (KiB)
  local peak=(0 0)
  if [ -n "$sampler_pid" ]; then
    kill -TERM "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
  fi
  [ -f "$work/rss.peak" ] && read -r -a peak <"$work/rss.peak"
  rss_peak=${peak[0]}
}

# One shared certificate (P-256, like the one Posthorn generates itself)
# for Posthorn and Postfix.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test,DNS:localhost \
  -days 30 -keyout "$work_root/key.pem" -out "$work_root/cert.pem" 2>/dev/null
chmod 644 "$work_root/cert.pem"

# --- scenario parameters -----------------------------------------------

sc_client="" sc_sessions="" sc_size="" sc_count="" sc_reuse="" sc_tls="" sc_rate=""
scenario() { # NAME: sets sc_*
  sc_sessions=20 sc_size=5120 sc_count=$MESSAGES sc_reuse=0 sc_tls=none sc_rate="" sc_client=loadgen
  case $1 in
    a) sc_client=smtp-source ;;
    b) sc_reuse=1 sc_tls=starttls ;;
    b1) sc_tls=starttls sc_count=$MESSAGES_CONN_AUTH ;;
    c) sc_size=102400 sc_count=$MESSAGES_LARGE sc_reuse=1 ;;
    d) sc_sessions=200 ;;
    g) sc_reuse=1 sc_tls=starttls sc_rate=1000 sc_count=$RATE_MESSAGES ;;
  esac
}
label() { [ "$1" = b1 ] && echo "b'" || echo "$1"; }

# --- the client ----------------------------------------------------------

# client SCENARIO SYSTEM PORT TLS: runs the scenario's client against
# 127.0.0.1:PORT; sets c_ok (accepted messages as far as the client knows),
# c_rate, c_p50, c_p99, c_t0 (when the client started), and warns about
# refusals and errors.
c_ok=0 c_rate=0 c_p50=- c_p99=- c_t0=0 c_e2e=-
client() {
  local scen=$1 system=$2 port=$3 tls=$4 out=$work/client.out err=$work/client.err rc=0 t0 t1 summary
  local args=(--server "127.0.0.1:$port" --sessions "$sc_sessions" --messages "$sc_count"
    --size "$sc_size" --pipelining --tls "$tls" --json --timeout 60 --duration-limit "$LIMIT_SECS")
  [ "$sc_reuse" = 1 ] && args+=(--reuse)
  [ -n "$sc_rate" ] && args+=(--rate "$sc_rate")
  # AUTH wherever the scenario uses TLS (for the sink: AUTH without TLS).
  [ "$sc_tls" != none ] && args+=(--user load@bench.test --password bench-password)
  c_t0=$(now)
  if [ "$sc_client" = smtp-source ]; then
    t0=$c_t0
    run_client "$out" "$err" "$SMTP_SOURCE" -s "$sc_sessions" -m "$sc_count" -l "$sc_size" \
      -S "compare bench" -f load@bench.test -t sink@example.net "127.0.0.1:$port" || rc=$?
    t1=$(now)
    cat "$out" "$err" >>"$LOG"
    c_ok=$sc_count c_p50=- c_p99=-
    c_rate=$(python3 -c 'import sys; print(f"{int(sys.argv[3]) / (float(sys.argv[2]) - float(sys.argv[1])):.1f}")' "$t0" "$t1" "$sc_count")
    if [ "$rc" -ne 0 ] || [ -s "$err" ]; then
      warn "$scen" "$system" "smtp-source exited $rc: $(head -c 300 "$err" | tr '\n' ' ')"
    fi
    log "  smtp-source: $sc_count messages, $c_rate/s ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s)"
    return 0
  fi
  run_client "$out" "$err" "$LOADGEN" "${args[@]}" || rc=$?
  {
    echo "  loadgen ${args[*]}"
    cat "$err"
  } >>"$LOG"
  if [ ! -s "$out" ]; then
    warn "$scen" "$system" "loadgen exited $rc without a report: $(head -c 300 "$err" | tr '\n' ' ')"
    c_ok=0 c_rate=0 c_p50=- c_p99=-
    return 0
  fi
  cp "$out" "$work/loadgen-$scen-$system.json"
  read -r c_ok c_rate c_p50 c_p99 summary < <(python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get("latency_ms") or {}
fmt = lambda v: "-" if v is None else f"{v:.1f}"
bad = [f"{code}: {n} (e.g. {r['reply_samples'].get(code, '')[:80]!r})" for code, n in r["replies"].items()]
bad += [f"{kind}: {n}" for kind, n in r["errors"].items()]
if r["failed"]:
    bad.insert(0, f"{r['failed']} failed")
print(r["ok"], f"{r['messages_per_s']:.1f}", fmt(lat.get("p50")), fmt(lat.get("p99")),
      ("; ".join(bad) or "-").replace("\n", " "))
PY
)
  log "  loadgen: $c_ok ok, $c_rate/s, p50 $c_p50 ms, p99 $c_p99 ms; not 2xx / errors: $summary"
  if [ "$summary" != "-" ]; then
    warn "$scen" "$system" "loadgen saw: $summary"
  fi
  if [ "$c_ok" -ne "$sc_count" ]; then
    warn "$scen" "$system" "loadgen: $c_ok of $sc_count messages accepted (it stops starting new ones after LIMIT_SECS=$LIMIT_SECS s)"
  fi
}

# --- accept scenarios (a b b1 c d g) -----------------------------------------

# e2e_rate: the scenario's messages / the time from the client's start to the
# sink counting SINK_TARGET (= sc_count) of them; "-" if it never did.
e2e_rate() {
  local t1
  t1=$(sink_reached)
  if [ -n "$t1" ]; then
    log "  end to end: the sink counted $sc_count messages $(awk -v a="$c_t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s after the client started"
    per_second "$sc_count" "$c_t0" "$t1"
  else
    log "  end to end: the sink never counted $sc_count messages"
    echo -
  fi
}

note_for() { # SCENARIO SYSTEM
  local n=""
  case $1 in
    a) n="smtp-source, no reuse" ;;
    b | g) n="reuse" ;;
    b1) n="no reuse" ;;
    c) n="reuse" ;;
    d) n="no reuse" ;;
  esac
  n="$sc_count msgs, $n"
  if [ "$2" = sink ] && [ "$sc_tls" != none ]; then n="$n; no TLS (smtp-sink has none)"; fi
  if [ "$2" = postfix ]; then n="$n; RSS summed over processes"; fi
  if [ "$2" = postfix ] && [ "${POSTFIX_DKIM:-0}" = 1 ]; then n="$n; OpenDKIM milter signing (RSS without it)"; fi
  echo "$n"
}

accept_sink() { # SCENARIO
  local scen=$1 port peak got
  port=$(free_port)
  SINK_TARGET=$sc_count
  if [ "$sc_tls" != none ]; then SINK_OPTS="-C -F"; else SINK_OPTS="-a -C -F"; fi
  sink_start "$port" accept
  rss_start "$sink_pid"
  client "$scen" sink "$port" none
  rss_stop; peak=$rss_peak
  sleep 0.3
  got=$(sink_count)
  log "  check: the sink counted $got messages, the client $c_ok accepted"
  [ "$got" -eq "$c_ok" ] || warn "$scen" sink "smtp-sink counted $got messages, the client $c_ok accepted"
  sink_stop
  unset SINK_OPTS
  c_e2e=-
  row "$scen" sink "$c_rate" "$c_p50" "$c_p99" "$peak" "$(note_for "$scen" sink)" "$c_e2e"
}

accept_postfix() { # SCENARIO
  local scen=$1 sink_port pf_port peak left got _
  sink_port=$(free_port)
  SINK_TARGET=$sc_count
  sink_start "$sink_port" relay
  pf_port=$(free_port)
  postfix_setup "$work" "$pf_port" "$sink_port"
  if [ "${POSTFIX_DKIM:-0}" = 1 ]; then
    postfix_dkim bench.test bench >>"$LOG" 2>&1
  fi
  if [ "$sc_tls" != none ]; then
    postfix_tls "$work_root/cert.pem" "$work_root/key.pem"
    postfix_sasl load@bench.test bench-password
  fi
  postfix_start
  rss_start "$(postfix_master_pid)"
  client "$scen" postfix "$pf_port" "$sc_tls"
  rss_stop; peak=$rss_peak
  # Everything accepted must reach the sink. Wait for the sink first (a
  # file the counter writes): the checks below must not share the cores
  # with the delivery the end-to-end figure times. (When the client had
  # fewer accepted than it sent, the sink's count never arrives: the queue
  # check below does the waiting, and end to end is "-".)
  [ "$c_ok" -lt "$sc_count" ] || sink_wait >/dev/null || true
  left=0
  for _ in $(seq $((timeout * 10))); do
    left=$(postfix_queue_count)
    [ "$left" -eq 0 ] && [ "$(sink_count)" -ge "$c_ok" ] && break
    sleep 0.1
  done
  sleep 0.3
  got=$(sink_count)
  c_e2e=$(e2e_rate)
  log "  check: $left left in Postfix's queue, $(postfix_sent_count) logged status=sent, the sink counted $got, the client $c_ok accepted; end to end $c_e2e/s"
  [ "$left" -eq 0 ] || warn "$scen" postfix "$left messages still in Postfix's queue after ${timeout}s"
  [ "$got" -eq "$c_ok" ] || warn "$scen" postfix "the sink got $got messages from Postfix, the client $c_ok accepted"
  postfix_stop
  sink_stop
  row "$scen" postfix "$c_rate" "$c_p50" "$c_p99" "$peak" "$(note_for "$scen" postfix)" "$c_e2e"
}

posthorn_prepare() { # TRUSTED(0|1) SMTP_EXTRA: fresh store and config in $work
  posthorn_init
  "$BIN" --data-dir "$work/posthorn" account set bench connections_per_user 0 >/dev/null
  "$BIN" --data-dir "$work/posthorn" account set bench api_calls_per_minute 0 >/dev/null
  POSTHORN_TRUSTED=$1
  POSTHORN_SMTP=$2
  POSTHORN_LIMITS="connections_per_ip = 0"
  POSTHORN_TLS_CERT=$work_root/cert.pem
  POSTHORN_TLS_KEY=$work_root/key.pem
}
posthorn_unprepare() {
  unset POSTHORN_TRUSTED POSTHORN_SMTP POSTHORN_LIMITS POSTHORN_TLS_CERT POSTHORN_TLS_KEY
}

# posthorn_check SCENARIO ACCEPTED: the store holds exactly what the client
# says was accepted, and all of it gets delivered to the sink.
posthorn_check() {
  local scen=$1 accepted=$2 stored delivered=0 _
  stored=$(posthorn_stored)
  for _ in $(seq "$timeout"); do
    delivered=$(posthorn_delivered)
    [ "$delivered" -ge "$stored" ] && break
    sleep 1
  done
  log "  check: $stored messages in the store, $delivered recipients delivered, the sink counted $(sink_count), the client $accepted accepted"
  [ "$stored" -eq "$accepted" ] || warn "$scen" posthorn "the client had $accepted messages accepted, the store holds $stored"
  [ "$delivered" -eq "$stored" ] || warn "$scen" posthorn "$delivered of $stored recipients delivered after ${timeout}s"
}

accept_posthorn() { # SCENARIO
  local scen=$1 sink_port port tls_port peak trusted=1
  [ "$sc_tls" != none ] && trusted=0
  sink_port=$(free_port)
  SINK_TARGET=$sc_count
  sink_start "$sink_port" relay
  port=$(free_port)
  tls_port=$(free_port)
  posthorn_prepare "$trusted" ""
  posthorn_config true "$sink_port" "$port" "$tls_port"
  posthorn_serve "$work/posthorn.log"
  wait_for_port "$port" "$server" || { cat "$work/posthorn.log" >&2; return 1; }
  local perf_pid=""
  if [ -n "${PERF:-}" ]; then
    perf record ${PERF_ARGS:---call-graph dwarf,16384 -F 299} -p "$server" -o "$PERF" 2>/dev/null &
    perf_pid=$!
  fi
  rss_start "$server"
  client "$scen" posthorn "$port" "$sc_tls"
  rss_stop; peak=$rss_peak
  # The sink first, as for Postfix: `posthorn queue list` over 10,000
  # messages, once a second, took a fifth of the machine from the very
  # delivery the end-to-end figure times (`perf`, 2026-12-06). Not when
  # the client had fewer accepted than it sent (see accept_postfix).
  [ "$c_ok" -lt "$sc_count" ] || sink_wait >/dev/null || true
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  posthorn_check "$scen" "$c_ok"
  c_e2e=$(e2e_rate)
  posthorn_stop
  sink_stop
  posthorn_unprepare
  if grep -qiE 'error|panic' "$work/posthorn.log"; then
    warn "$scen" posthorn "server log: $(grep -iE 'error|panic' "$work/posthorn.log" | head -n 1 | cut -c1-200)"
  fi
  cat "$work/posthorn.log" >>"$LOG"
  row "$scen" posthorn "$c_rate" "$c_p50" "$c_p99" "$peak" "$(note_for "$scen" posthorn)" "$c_e2e"
}

# --- e: delivery ---------------------------------------------------------------

delivery_timed_begin() {
  case $1 in
    postfix) rss_start "$(postfix_master_pid)" ;;
    posthorn) rss_start "$server" ;;
  esac
}
delivery_timed_end() { rss_stop; e_peak=$rss_peak; }
delivery_fail() { warn e "$e_system" "$*"; }
e_peak=0 e_system=""

scenario_e() {
  local system rate
  for system in postfix posthorn; do
    has_system "$system" || continue
    say "== e $system: $DELIVERY_MESSAGES queued x 5 KB drained into smtp-sink"
    work=$work_root/e-$system-$round
    mkdir -p "$work"
    messages=$DELIVERY_MESSAGES size=5120 sessions=20 e_system=$system e_peak=0
    unset SINK_TARGET SINK_OPTS
    "delivery_$system" >>"$LOG" 2>&1
    rate=$(awk -v s="$system" '$1 == s { printf "%.1f", $2 / ($4 - $3) }' "$work/results")
    say "  $rate messages/s"
    if [ "$system" = postfix ]; then
      row e postfix "$rate" - - "$e_peak" "$DELIVERY_MESSAGES msgs, default concurrency; RSS summed over processes"
    else
      row e posthorn "$rate" - - "$e_peak" "$DELIVERY_MESSAGES msgs, DKIM ${DKIM:-rsa} on every message; includes startup"
    fi
  done
}

# --- f: idle connections -------------------------------------------------------

# idle_hold PORT N: holds N connections open in the background (idle_pid);
# sets f_open f_greeted f_refused f_closed f_failed once they are up.
idle_hold() {
  local _ r=()
  rm -f "$work/idle.ready" "$work/idle.ready.final"
  python3 bench/lib/idle.py 127.0.0.1 "$1" "$2" "$work/idle.ready" &
  idle_pid=$!
  for _ in $(seq 900); do
    [ -f "$work/idle.ready" ] && break
    kill -0 "$idle_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -f "$work/idle.ready" ] && read -r -a r <"$work/idle.ready"
  f_open=${r[0]:-0} f_greeted=${r[1]:-0} f_refused=${r[2]:-0} f_closed=${r[3]:-0} f_failed=${r[4]:-0}
}
idle_release() { # sets f_final_greeted f_final_closed
  local r=() _
  kill -TERM "$idle_pid" 2>/dev/null || true
  wait "$idle_pid" 2>/dev/null || true
  idle_pid=""
  [ -f "$work/idle.ready.final" ] && read -r -a r <"$work/idle.ready.final"
  f_final_greeted=${r[1]:-0} f_final_closed=${r[3]:-0}
}

# f_normal_client SYSTEM PORT: 10 messages over STARTTLS + AUTH, one session.
f_normal_client() {
  sc_sessions=1 sc_size=5120 sc_count=10 sc_reuse=1 sc_tls=starttls sc_rate="" sc_client=loadgen
  client f "$1" "$2" starttls
}

f_posthorn() {
  local sink_port port tls_port before after before_pss after_pss per peak
  say "== f posthorn: $IDLE idle connections"
  work=$work_root/f-posthorn
  mkdir -p "$work"
  sink_port=$(free_port)
  SINK_TARGET=1000000
  sink_start "$sink_port" relay
  port=$(free_port)
  tls_port=$(free_port)
  # Room for the idle connections and the normal client past the default
  # [smtp] max_connections (10,000), which would refuse the client.
  posthorn_prepare 0 "idle_timeout_secs = 3600
max_connections = $((IDLE + 100))"
  posthorn_config true "$sink_port" "$port" "$tls_port"
  posthorn_serve "$work/posthorn.log"
  wait_for_port "$port" "$server" || { cat "$work/posthorn.log" >&2; return 1; }
  f_normal_client posthorn "$port" # warm up: TLS, a login, the store
  sleep 1
  before=$(python3 bench/lib/rss.py now "$server")
  before_pss=$(python3 bench/lib/rss.py pss "$server")
  rss_start "$server"
  idle_hold "$port" "$IDLE"
  sleep 2
  after=$(python3 bench/lib/rss.py now "$server")
  after_pss=$(python3 bench/lib/rss.py pss "$server")
  f_normal_client posthorn "$port"
  local ok=$c_ok p50=$c_p50 p99=$c_p99
  idle_release
  rss_stop; peak=$rss_peak
  log "  idle: $f_open connected, $f_greeted greeted 220, $f_refused refused, $f_closed closed, $f_failed failed; at the end $f_final_greeted still open, $f_final_closed closed"
  log "  RSS before $before KiB, with the connections $after KiB (PSS $before_pss -> $after_pss KiB)"
  [ "$f_greeted" -eq "$IDLE" ] || warn f posthorn "$f_greeted of $IDLE idle connections got a 220 greeting ($f_refused refused, $f_closed closed, $f_failed failed)"
  [ "$f_final_closed" -eq 0 ] || warn f posthorn "the server closed $f_final_closed idle connections while they were held"
  [ "$ok" -eq 10 ] || warn f posthorn "the normal client got $ok of 10 messages accepted"
  posthorn_check f 20
  posthorn_stop
  sink_stop
  posthorn_unprepare
  cat "$work/posthorn.log" >>"$LOG"
  per=$(python3 -c 'import sys; b, a, n = map(int, sys.argv[1:]); print(f"{(a - b) / n:.1f}" if n else "-")' "$before" "$after" "$f_greeted")
  say "  $per KiB RSS per idle connection ($f_greeted open); normal client: $ok/10 accepted, p99 $p99 ms"
  row f posthorn - "$p50" "$p99" "$peak" "$per KiB RSS per idle connection ($f_greeted held: RSS $((before / 1024)) -> $((after / 1024)) MiB); normal client $ok/10 accepted while they were open"
}

f_postfix() {
  local sink_port pf_port master before after before_pss after_pss per per_pss peak
  say "== f postfix: $IDLE_POSTFIX idle connections"
  work=$work_root/f-postfix
  mkdir -p "$work"
  sink_port=$(free_port)
  SINK_TARGET=1000000
  sink_start "$sink_port" relay
  pf_port=$(free_port)
  postfix_setup "$work" "$pf_port" "$sink_port"
  postfix_tls "$work_root/cert.pem" "$work_root/key.pem"
  postfix_sasl load@bench.test bench-password
  postfix_start
  master=$(postfix_master_pid)
  f_normal_client postfix "$pf_port" # warm up
  sleep 2
  before=$(python3 bench/lib/rss.py now "$master")
  before_pss=$(python3 bench/lib/rss.py pss "$master")
  rss_start "$master"
  idle_hold "$pf_port" "$IDLE_POSTFIX"
  sleep 2
  after=$(python3 bench/lib/rss.py now "$master")
  after_pss=$(python3 bench/lib/rss.py pss "$master")
  f_normal_client postfix "$pf_port"
  local ok=$c_ok p50=$c_p50 p99=$c_p99
  idle_release
  rss_stop; peak=$rss_peak
  log "  idle: $f_open connected, $f_greeted greeted 220, $f_refused refused, $f_closed closed, $f_failed failed; at the end $f_final_greeted still open, $f_final_closed closed"
  log "  RSS (sum) before $before KiB, with the connections $after KiB (PSS $before_pss -> $after_pss KiB)"
  [ "$f_greeted" -eq "$IDLE_POSTFIX" ] || warn f postfix "$f_greeted of $IDLE_POSTFIX idle connections got a 220 greeting"
  [ "$ok" -eq 10 ] || warn f postfix "the normal client got $ok of 10 messages accepted"
  postfix_stop
  sink_stop
  read -r per per_pss < <(python3 -c 'import sys; b, a, bp, ap, n = map(int, sys.argv[1:]); print(f"{(a - b) / n:.0f} {(ap - bp) / n:.0f}" if n else "- -")' "$before" "$after" "$before_pss" "$after_pss" "$f_greeted")
  say "  $per_pss KiB PSS ($per KiB RSS) per idle connection ($f_greeted open); normal client: $ok/10 accepted"
  row f postfix - "$p50" "$p99" "$peak" "$per_pss KiB PSS ($per KiB summed RSS) per idle connection, one smtpd each ($f_greeted held; default_process_limit = 100, so not $IDLE); normal client $ok/10 accepted"
}

scenario_f() {
  if has_system postfix; then f_postfix; fi
  if has_system posthorn; then f_posthorn; fi
}

# --- run -------------------------------------------------------------------------

# One core's RSA-2048 signatures per second, for the "RSA cores" column.
rsa_signs=""
if [ "${DKIM:-rsa}" = rsa ]; then
  rsa_signs=$(openssl speed -seconds 2 rsa2048 2>/dev/null | awk '$1 == "rsa" && $2 == 2048 { print $6 }')
  say "RSA-2048 on one core: ${rsa_signs:-?} signatures/s (openssl speed -seconds 2 rsa2048); $(nproc) CPUs"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(now)
say "compare: scenarios [$SCENARIOS], systems [$SYSTEMS]; MESSAGES=$MESSAGES MESSAGES_LARGE=$MESSAGES_LARGE MESSAGES_CONN_AUTH=$MESSAGES_CONN_AUTH RATE_MESSAGES=$RATE_MESSAGES DELIVERY_MESSAGES=$DELIVERY_MESSAGES IDLE=$IDLE IDLE_POSTFIX=$IDLE_POSTFIX; log in $LOG"
say "load average before: $load_before"
for scen in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && say "-- round $round of $ROUNDS"
    case $scen in
      e) scenario_e ;;
      f) [ "$round" -eq 1 ] && scenario_f ;;
      *)
        for system in sink postfix posthorn; do
          has_system "$system" || continue
          scenario "$scen"
          say "== $(label "$scen") $system: $sc_sessions sessions x $sc_size B, $sc_count messages, tls $sc_tls, reuse $sc_reuse${sc_rate:+, offered $sc_rate/s}"
          work=$work_root/$scen-$system-$round
          mkdir -p "$work"
          "accept_$system" "$scen"
          say "  $c_rate messages/s, p50 $c_p50 ms, p99 $c_p99 ms; end to end $c_e2e messages/s"
        done
        ;;
    esac
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
finished=$(now)
say "load average after: $load_after"

# --- the table -------------------------------------------------------------------

if [ -n "${POSTHORN_COMMIT:-}" ]; then
  commit=$POSTHORN_COMMIT
elif [ -n "$built" ]; then
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit + uncommitted changes"; fi
else
  commit="BIN=$BIN (set POSTHORN_COMMIT to name its commit)"
fi
python3 - "$rows" "$warnings" "$OUT" "$rsa_signs" <<PY
import sys, time
rows_file, warn_file, out, rsa_signs = sys.argv[1:]
rsa_signs = float(rsa_signs) if rsa_signs else 0.0
rows = [l.rstrip("\n").split("\t") for l in open(rows_file) if l.strip()]
# With ROUNDS > 1: of each system's rounds in a scenario, the one with the
# median rate (the lower middle one of an even number), noted with the range;
# the end-to-end rate is the median of its own rounds, its range noted too.
rounds = {}
for r in rows:
    rounds.setdefault((r[0], r[1]), []).append(r)
rows = []
for runs in rounds.values():
    rated = sorted((r for r in runs if r[2] not in ("-", "")), key=lambda r: float(r[2]))
    ends = sorted(float(r[7]) for r in runs if r[7] not in ("-", ""))
    if len(rated) > 1:
        pick = rated[(len(rated) - 1) // 2]
        spread = f"median of {len(rated)} rounds ({float(rated[0][2]):,.0f}-{float(rated[-1][2]):,.0f}"
        spread += f"; end to end {ends[0]:,.0f}-{ends[-1]:,.0f})" if len(ends) > 1 else ")"
        e2e = f"{ends[(len(ends) - 1) // 2]}" if ends else "-"
        rows.append(pick[:6] + [f"{spread}; {pick[6]}" if pick[6] else spread, e2e])
    else:
        rows.append(runs[0])
warns = [l.rstrip("\n").split("\t", 2) for l in open(warn_file) if l.strip()]
order = {s: i for i, s in enumerate("a b b1 c d g e f".split())}
sysorder = {"sink": 0, "postfix": 1, "posthorn": 2}
rows.sort(key=lambda r: (order[r[0]], sysorder[r[1]]))
label = lambda s: "b'" if s == "b1" else s
rate = {(r[0], r[1]): float(r[2]) for r in rows if r[2] not in ("-", "")}
e2e = {(r[0], r[1]): float(r[7]) for r in rows if r[7] not in ("-", "")}
desc = {
    "a": "20 x 5 KB, plain, 1 msg/conn, smtp-source, trusted net",
    "b": "20 x 5 KB, STARTTLS + AUTH, reuse",
    "b1": "20 x 5 KB, STARTTLS + AUTH, 1 msg/conn",
    "c": "20 x 100 KB, plain, trusted net, reuse",
    "d": "200 x 5 KB, plain, trusted net, 1 msg/conn",
    "g": "as b, offered at 1,000 msg/s",
    "e": "delivery: queue of 5 KB messages drained to smtp-sink",
    "f": "idle connections",
}
head = ["scenario", "system", "accept msg/s", "end to end msg/s", "p50 ms", "p99 ms", "peak RSS MiB",
        "Posthorn/Postfix accept", "Posthorn/Postfix end to end", "Posthorn/sink"]
if rsa_signs:
    head.append("RSA cores")
head.append("notes")
table = []
for scen, system, r, p50, p99, peak, note, end in rows:
    ratio_pf = ratio_sink = ratio_e2e = cores = ""
    if system == "posthorn" and r != "-":
        if (scen, "postfix") in rate and rate[(scen, "postfix")] > 0:
            ratio_pf = f"{float(r) / rate[(scen, 'postfix')]:.2f}"
        if (scen, "sink") in rate and rate[(scen, "sink")] > 0:
            ratio_sink = f"{float(r) / rate[(scen, 'sink')]:.0%}"
    if system == "posthorn" and (scen, "posthorn") in e2e and e2e.get((scen, "postfix"), 0) > 0:
        ratio_e2e = f"{e2e[(scen, 'posthorn')] / e2e[(scen, 'postfix')]:.2f}"
    signed = e2e.get((scen, system)) or (rate.get((scen, system)) if scen == "e" else None)
    if system == "posthorn" and rsa_signs and signed:
        cores = f"{signed / rsa_signs:.2f}"
    mib = f"{int(peak) / 1024:.1f}" if peak.isdigit() and int(peak) > 0 else "-"
    rs = r if r == "-" else f"{float(r):,.0f}"
    es = end if end in ("-", "") else f"{float(end):,.0f}"
    table.append([f"{label(scen)}: {desc[scen]}", system, rs, es, p50, p99, mib, ratio_pf, ratio_e2e, ratio_sink]
                 + ([cores] if rsa_signs else []) + [note])

def text(rows):
    cols = list(zip(*([head] + rows)))
    width = [max(len(c) for c in col) for col in cols[:-1]]
    lines = []
    for r in [head] + rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r[:-1], width))]
        lines.append("  ".join(cells) + "  " + r[-1])
    return "\n".join(lines)

print()
print(text(table))
for scen, system, w in warns:
    print(f"WARNING {label(scen)} {system}: {w}")
if not warns:
    print("checks: every accepted message was stored/passed on, no non-2xx replies, no connection errors")

md = []
md.append(f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}; Posthorn $commit; DKIM ${DKIM:-rsa}; "
          + ("Postfix signs with OpenDKIM (rsa) in the accept scenarios; " if "${POSTFIX_DKIM:-0}" == "1" else "")
          +
          f"load average before {'$load_before'.split()[0]}, after {'$load_after'.split()[0]}; "
          f"{float('$finished') - float('$started'):.0f} s in all."
          + (f" RSA-2048 on one core: {rsa_signs:,.0f} signatures/s (openssl speed -seconds 2 rsa2048), $(nproc) CPUs."
             if rsa_signs else ""))
md.append("")
md.append("| " + " | ".join(head) + " |")
md.append("|" + "|".join("---" if i < 2 or i == len(head) - 1 else "---:" for i in range(len(head))) + "|")
for r in table:
    md.append("| " + " | ".join(c.replace("|", "\\\\|") for c in r) + " |")
md.append("")
if warns:
    for scen, system, w in warns:
        md.append(f"- WARNING {label(scen)} {system}: {w}")
else:
    md.append("Checks passed: every message the client saw accepted was stored (Posthorn) or reached the sink (Postfix, smtp-sink); no non-2xx replies, no connection errors.")
open(out, "w").write("\n".join(md) + "\n")
print(f"\nmarkdown: {out}\nlog: $LOG")
PY
