#!/usr/bin/env bash
# Cluster mode on one machine: accept and delivery rates, and CPU per
# message of Posthorn and of PostgreSQL, for one node on the embedded store,
# one node on PostgreSQL and three nodes sharing one PostgreSQL database
# (issue 18). The same client, message count and sink for each, one after
# the other in one run; a table on stdout and as markdown in $OUT.
#
#   bench/cluster.sh                          # sqlite1 pg1 pg3, 10,000 messages each (~2 min)
#   ROUNDS=3 bench/cluster.sh                 # each configuration 3 times in turn, medians
#   MESSAGES=2000 CONFIGS="sqlite1 pg1" bench/cluster.sh
#
# Configurations (CONFIGS, default "sqlite1 pg1 pg3"):
#   sqlite1  one `posthorn serve`, embedded store in its data dir: the same
#            server as bench/compare.sh's posthorn (bench/lib/posthorn.sh).
#   pg1      one node, [store] backend = "postgres" on a database created
#            for this configuration and round (posthorn_bench_PID_CONFIG_ROUND,
#            dropped WITH (FORCE) afterwards), max_connections = PG_POOL.
#            The account, domain (DKIM key) and sender are provisioned with
#            the admin CLI and --config, so they live in PostgreSQL.
#   pg3      NODES (3) nodes on one such database, each with its own data
#            dir, ports and [delivery] node_id, [cluster] node_timeout =
#            "30s", and [ratelimit] backend = "redis" with a prefix unique to
#            the run (shared by the nodes, as a cluster's must be).
# Everything else as compare.sh's scenario b: SESSIONS (20) sessions of
# posthorn-loadgen, SIZE (5,120) bytes, STARTTLS + AUTH PLAIN (no trusted
# network), connection reuse, PIPELINING; the account's limits and the
# per-address caps lifted; DKIM (rsa, the default, or ed25519) on every
# message; every node delivers at once through [delivery.relay] to one
# smtp-sink, while it accepts.
#
# The client for pg3: one posthorn-loadgen per node, started together, the
# sessions and messages split as evenly as integers allow (20 sessions: 7, 7
# and 6; 10,000 messages: 3,334, 3,333, 3,333), as a load balancer in front
# of a cluster would spread connections. Its accept rate is all accepted
# messages over the longest of the three loadgen runs (each loadgen's own
# clock, as for one node), not the sum of their rates, which would flatter
# a run where one loadgen finished early. p50/p99 are the worst of the
# three. The same loadgen binary with the same flags serves every
# configuration, so the client's own CPU (it shares the machine) is alike.
#
# Columns:
#   accept/s     loadgen's messages/s (see above for pg3)
#   p50, p99     MAIL-to-final-reply latency, ms
#   e2e/s        accepted messages over the time from starting the client
#                to the last of them counted by the sink (delivery included)
#   Posthorn CPU s per 1,000 messages: utime+stime of every node process
#                (/proc/PID/stat), sampled after a 2 s idle window once the
#                nodes are up (startup and migrations left out) and again
#                0.5 s after the sink has counted the last message.
#   PG CPU       s per 1,000 messages: the PostgreSQL server as a whole,
#                sampled at the same two moments as utime+stime of the
#                postmaster and every live child of it, plus the postmaster's
#                cutime+cstime, which holds the CPU of every child it has
#                reaped. Backends come and go (the nodes' pools, the admin
#                CLI), so summing live processes alone would lose those that
#                exit in between; with the reaped children's time the
#                difference is exact for the whole server. It includes what
#                else uses this PostgreSQL meanwhile (other databases; the
#                idle rate measured in the 2 s window before each run is in
#                the log and the notes), and the WAL writer, checkpointer and
#                background writer, which work for these commits too.
#   PG backends  s per 1,000 messages: only the backends connected to this
#                run's database, sampled at the end before the nodes stop
#                (their whole lifetime's utime+stime, from pg_stat_activity's
#                pids): this run's SQL alone, without other databases and
#                PostgreSQL's own background processes. A backend that left
#                before the end is missing, and the pools' connections
#                count their time since the nodes started (migrations, the
#                idle window) too, so it can come out a little above PG CPU.
#   busy         the machine's CPU use over the same window (/proc/stat,
#                all cores; 100 % = every core busy)
#   others       the part of that used by processes that are not this
#                benchmark's: busy time less the nodes, the PostgreSQL
#                server, the client (the loadgens, reaped children of this
#                script, with its few helpers) and the sink. On a shared
#                machine (someone compiling), rows with a large figure here
#                had less CPU than the others.
#
# Checks (a WARNING line under the table otherwise): loadgen saw no non-2xx
# reply and no connection error, accepted MESSAGES; the store holds what
# was accepted and every recipient ends delivered; the sink counted every
# accepted message (more means a message was sent twice); no "error" or
# "panic" in a node's log.
#
# Environment:
#   MESSAGES (10000), SESSIONS (20), SIZE (5120), DKIM (rsa), NODES (3, for
#   pg3), CONFIGS, ROUNDS (1; N runs every configuration N times taking
#   turns, sqlite1 pg1 pg3 sqlite1 ..., and shows each one's median round
#   by accept rate, the range in the notes), PG_SERVER (postgres URL
#   without the database, default postgres://postgres@127.0.0.1:5432; the
#   user must be allowed to CREATE DATABASE), PG_POOL ([store]
#   max_connections, 20), REDIS_URL (redis://127.0.0.1:6379), TIMEOUT
#   (seconds to wait for delivery, 600), LIMIT_SECS (loadgen's
#   --duration-limit, 180), OUT (default bench/results/cluster-DATE.md; the
#   full log next to it as .log), BIN / LOADGEN / POSTHORN_COMMIT (as in
#   compare.sh: run another build instead of building), DELIVERY_ENABLED
#   (true; false starts the nodes with [delivery] enabled = false, to see
#   the accept rate alone: set TIMEOUT=1 too, since nothing reaches the
#   sink, and read only the accept columns), KEEP=1 (keep the
#   temp dir: configs, node logs, loadgen JSON), PG_SET (settings for the
#   run's databases, "name=value" separated by ";", e.g.
#   PG_SET="log_min_duration_statement=0" to have PostgreSQL log every
#   statement with its duration, for profiling; applied with ALTER DATABASE
#   before the nodes start), PG_PROFILE=1 (log every statement of the run's
#   databases, as above, and write to the log the statements per message,
#   by statement, counted from the server's log between the client's start
#   and the end of delivery, with the parse/bind/execute steps; needs the
#   server's log to be a file this script can read, as Debian's
#   /var/log/postgresql/*.log is for root. Logging every statement costs
#   PostgreSQL CPU: take the CPU columns from a run without it).
#
# The log also gets, per PostgreSQL run, the database's transactions, rows
# written, WAL bytes and WAL fsyncs per message (pg_stat_database and the
# server's pg_stat_wal) and each table's inserts, updates, deletes and
# scans (pg_stat_user_tables), to see where the database's work goes.
#
# Needs PostgreSQL and Redis (pg3) reachable, psql, redis-cli, python3,
# openssl, Postfix's smtp-sink (the postfix package is installed without
# configuring the system instance if missing; the sink is a private one,
# bench/lib/sink.sh), and to run as root (smtp-sink -u nobody). Reads the
# PostgreSQL server's /proc entries, so PostgreSQL must run on this machine
# for the PG CPU columns (else they show "-"). Stops its nodes, clients and
# sink and drops its databases on exit, Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. bench/lib/common.sh
# shellcheck source-path=SCRIPTDIR source=lib/sink.sh
. bench/lib/sink.sh
# shellcheck source-path=SCRIPTDIR source=lib/posthorn.sh
. bench/lib/posthorn.sh

MESSAGES=${MESSAGES:-10000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-5120}
NODES=${NODES:-3}
CONFIGS=${CONFIGS:-sqlite1 pg1 pg3}
ROUNDS=${ROUNDS:-1}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_POOL=${PG_POOL:-20}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
LIMIT_SECS=${LIMIT_SECS:-180}
timeout=${TIMEOUT:-600}
stamp=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-bench/results/cluster-$stamp.md}
LOG=${OUT%.md}.log
export DKIM=${DKIM:-rsa}

for c in $CONFIGS; do
  case $c in
    sqlite1 | pg1 | pg3) ;;
    *) echo "CONFIGS: unknown configuration '$c' (sqlite1 pg1 pg3)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/cluster.sh must run as root (smtp-sink -u nobody)" >&2
  exit 1
fi
if [ "$SESSIONS" -lt "$NODES" ] || [ "$MESSAGES" -lt "$NODES" ]; then
  echo "SESSIONS and MESSAGES must be at least NODES ($NODES)" >&2
  exit 2
fi
for tool in psql python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench/cluster.sh needs $tool" >&2; exit 1; }
done
if [[ " $CONFIGS " == *" pg3 "* ]]; then
  command -v redis-cli >/dev/null || { echo "bench/cluster.sh needs redis-cli for pg3" >&2; exit 1; }
  redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "Redis does not answer at $REDIS_URL" >&2; exit 1; }
fi
psql_admin() { psql "$PG_SERVER/postgres" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
psql_admin -c 'select 1' >/dev/null || { echo "PostgreSQL does not answer at $PG_SERVER" >&2; exit 1; }

# smtp-sink comes with Postfix. Installed without configuring the system
# instance ("No configuration": no main.cf, so nothing starts or needs it).
if [ ! -x "$SMTP_SINK" ]; then
  echo "installing postfix for smtp-sink (No configuration)..." >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi

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
work=$work_root
rows=$work_root/rows.tsv
warnings=$work_root/warnings.txt
: >"$rows"
: >"$warnings"
node_pids=()   # the running nodes
client_pids=() # the running loadgens
databases=()   # created and not yet dropped
redis_prefixes=()

log() { echo "$*" >>"$LOG"; }
say() { echo "$*" >&2; echo "$*" >>"$LOG"; }
warn() { # CONFIG TEXT
  say "  WARNING: $2"
  printf '%s\t%s\n' "$1" "$2" >>"$warnings"
}

# stop_nodes: SIGTERM to every node, then up to 20 s for them to go, then
# SIGKILL.
stop_nodes() {
  local p _
  for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 200); do
    local alive=0
    for p in "${node_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${node_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "node $p did not stop within 20 s; SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  node_pids=()
}

drop_database() { # NAME
  psql_admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || echo "could not drop database $1" >&2
  local d rest=()
  for d in "${databases[@]}"; do [ "$d" = "$1" ] || rest+=("$d"); done
  databases=("${rest[@]}")
}

drop_redis_keys() { # PREFIX
  redis-cli -u "$REDIS_URL" --scan --pattern "$1*" 2>/dev/null |
    xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}

cleanup() {
  set +e
  local p d
  for p in "${client_pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  stop_nodes
  sink_stop
  for d in "${databases[@]}"; do drop_database "$d"; done
  for p in "${redis_prefixes[@]}"; do drop_redis_keys "$p"; done
  if [ -n "${KEEP:-}" ]; then echo "kept $work_root" >&2; else rm -rf "$work_root"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# --- CPU accounting (/proc) ----------------------------------------------

cat >"$work_root/cpu.py" <<'PY'
import os, sys

def fields(pid):
    """utime, stime, cutime, cstime (clock ticks) and ppid of a process."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()  # from field 3 (state) on
    return int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]), int(rest[1])

def pids_sum(pids):
    total = 0
    for p in pids:
        try:
            u, s, _, _, _ = fields(p)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        total += u + s
    return total

mode = sys.argv[1]
if mode == "pids":      # utime+stime of these processes
    print(pids_sum(sys.argv[2:]))
elif mode == "server":  # a server and its children, reaped ones included
    master = int(sys.argv[2])
    u, s, cu, cs, _ = fields(master)
    total, live = u + s + cu + cs, 0
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == master:
            continue
        try:
            cu, cs, _, _, ppid = fields(d)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if ppid == master:
            total += cu + cs
            live += 1
    print(total, live)
elif mode == "children":  # cutime+cstime: a process's reaped children
    _, _, cu, cs, _ = fields(sys.argv[2])
    print(cu + cs)
elif mode == "stat":    # the machine: busy and total jiffies
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    print(total - idle, total)
PY
cpu() { python3 "$work_root/cpu.py" "$@"; }
CLK_TCK=$(getconf CLK_TCK)

pg_master=""
if pg_data=$(psql_admin -c 'show data_directory' 2>/dev/null) && [ -r "$pg_data/postmaster.pid" ]; then
  pg_master=$(head -n 1 "$pg_data/postmaster.pid")
  kill -0 "$pg_master" 2>/dev/null || pg_master=""
fi
# pg_snapshot DB: xact_commit xact_rollback tup_inserted+updated+deleted
# blks_hit wal_records wal_bytes wal_sync wal_write (the WAL counters are
# the whole server's).
pg_snapshot() {
  psql_admin -F ' ' -c "select d.xact_commit, d.xact_rollback, d.tup_inserted + d.tup_updated + d.tup_deleted, d.blks_hit,
      w.wal_records, w.wal_bytes, w.wal_sync, w.wal_write
    from pg_stat_database d, pg_stat_wal w where d.datname = '$1'"
}

# The server's log (its stderr), for PG_PROFILE.
pg_log=""
if [ -n "${PG_PROFILE:-}" ]; then
  if [ -n "$pg_master" ] && pg_log=$(readlink "/proc/$pg_master/fd/2") && [ -f "$pg_log" ] && [ -r "$pg_log" ]; then
    :
  else
    pg_log=""
    say "PG_PROFILE: PostgreSQL's log is not a file readable here; no statement profile"
  fi
fi
# statement_profile LOG OFFSET DB MESSAGES: statements per message, by
# statement, from what the server logged for DB since OFFSET (with
# log_min_duration_statement = 0: a line per parse, bind and execute step
# of the extended protocol, one per simple-protocol statement).
statement_profile() {
  python3 - "$@" <<'PY'
import collections, re, sys
path, start, db, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], max(int(sys.argv[4]), 1)
with open(path, "rb") as f:
    f.seek(start)
    text = f.read().decode("utf-8", "replace")
head = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.\d]* \S+ \[\d+\] \S*@(\S*) (\w+):  (.*)$")
entries, cur = [], None
for line in text.split("\n"):
    m = head.match(line)
    if m:
        if cur:
            entries.append(cur)
        cur = [m.group(1), m.group(2), m.group(3)]
    elif cur is not None:
        cur[2] += " " + line.strip()
if cur:
    entries.append(cur)
steps, stmts, ms = collections.Counter(), collections.Counter(), collections.Counter()
for d, level, msg in entries:
    if d != db or level != "LOG":
        continue
    m = re.match(r"duration: ([\d.]+) ms  (parse|bind|execute|statement)[^:]*: (.*)", msg)
    if not m:
        continue
    steps[m.group(2)] += 1
    if m.group(2) in ("execute", "statement"):
        q = re.sub(r"\s+", " ", m.group(3)).strip()[:100]
        stmts[q] += 1
        ms[q] += float(m.group(1))
total = sum(stmts.values())
print(f"  statements per message (server log, {n} messages): {total / n:.3f} executed; steps: "
      + ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(steps.items())))
for q, c in stmts.most_common(25):
    print(f"    {c / n:7.3f}/msg {c:7d}x {ms[q] / c:9.3f} ms avg  {q}")
PY
}

redis_pid=""
if [[ " $CONFIGS " == *" pg3 "* ]]; then redis_pid=$(pgrep -o -x redis-server || true); fi
pg_ticks() { # total ticks of the PostgreSQL server, or "-"
  local t
  if [ -n "$pg_master" ] && t=$(cpu server "$pg_master" 2>/dev/null); then echo "${t%% *}"; else echo -; fi
}

# One shared certificate for every node (as compare.sh).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test,DNS:localhost \
  -days 30 -keyout "$work_root/key.pem" -out "$work_root/cert.pem" 2>/dev/null

# --- one configuration ----------------------------------------------------

# node_setup DIR I SINK_PORT STORE DELIVERY EXTRA: config for node I in
# DIR/nI; sets node_port. POSTHORN_* as compare.sh's posthorn in scenario
# b; the HTTP API on a free port of its own (not the default 8025, which
# the nodes, or another server on this machine, would contend for).
node_port=""
node_setup() {
  local dir=$1 i=$2 sink_port=$3 tls_port http_port extra
  work=$dir/n$i
  mkdir -p "$work"
  node_port=$(free_port)
  tls_port=$(free_port)
  http_port=$(free_port)
  extra=$(printf '[http]\nlisten = "127.0.0.1:%s"\n%s' "$http_port" "$6")
  POSTHORN_TRUSTED=0 POSTHORN_SMTP="" POSTHORN_LIMITS="connections_per_ip = 0" \
    POSTHORN_TLS_CERT=$work_root/cert.pem POSTHORN_TLS_KEY=$work_root/key.pem \
    POSTHORN_DELIVERY=$5 POSTHORN_STORE=$4 POSTHORN_EXTRA=$extra \
    posthorn_config "${DELIVERY_ENABLED:-true}" "$sink_port" "$node_port" "$tls_port"
  echo "$node_port" >"$work/port"
}

# provision: account, domain with its DKIM key, sender, limits lifted; on
# the store of the node config in $work.
provision() {
  if [ -n "${POSTHORN_STORE:-}" ]; then posthorn_cli migrate >>"$LOG" 2>&1; fi
  posthorn_init
  posthorn_cli account set bench connections_per_user 0 >/dev/null
  posthorn_cli account set bench api_calls_per_minute 0 >/dev/null
}

# loadgen_summary JSON...: "ok failed rate p50 p99 elapsed problems" over
# one or more loadgen reports (rate: all ok over the longest elapsed).
loadgen_summary() {
  python3 - "$@" <<'PY'
import json, sys
ok = failed = 0
elapsed = 0.0
p50 = p99 = None
bad = {}
for path in sys.argv[1:]:
    try:
        r = json.load(open(path))
    except Exception as e:
        bad[f"no report from {path.rsplit('/', 1)[-1]}"] = 1
        continue
    ok += r["ok"]
    failed += r["failed"]
    elapsed = max(elapsed, r["elapsed_s"])
    lat = r.get("latency_ms") or {}
    if lat.get("p50") is not None:
        p50 = max(p50 or 0, lat["p50"])
        p99 = max(p99 or 0, lat["p99"])
    for code, n in r["replies"].items():
        key = f"{code} (e.g. {r['reply_samples'].get(code, '')[:80]!r})"
        bad[key] = bad.get(key, 0) + n
    for kind, n in r["errors"].items():
        bad[kind] = bad.get(kind, 0) + n
fmt = lambda v: "-" if v is None else f"{v:.1f}"
problems = "; ".join(f"{k}: {n}" for k, n in bad.items())
if failed:
    problems = f"{failed} failed" + (f"; {problems}" if problems else "")
rate = ok / elapsed if elapsed > 0 else 0.0
print(ok, failed, f"{rate:.1f}", fmt(p50), fmt(p99), f"{elapsed:.3f}", (problems or "-").replace("\n", " "))
PY
}

run_config() { # CONFIG ROUND
  local cfg=$1 round=$2 dir nodes=1 store="" extra="" db="" prefix="" i
  dir=$work_root/$cfg-$round
  mkdir -p "$dir"
  case $cfg in
    pg1) nodes=1 ;;
    pg3) nodes=$NODES ;;
  esac
  say "== $cfg (round $round of $ROUNDS): $nodes node(s), $SESSIONS sessions x $SIZE B, $MESSAGES messages, STARTTLS + AUTH, reuse, DKIM $DKIM"

  # The sink, shared by every node.
  local sink_port
  sink_port=$(free_port)
  work=$dir
  SINK_TARGET=$MESSAGES
  sink_start "$sink_port" relay

  if [ "$cfg" != sqlite1 ]; then
    db=posthorn_bench_$$_${cfg}_$round
    databases+=("$db")
    psql_admin -c "CREATE DATABASE \"$db\"" >/dev/null
    local setting settings=()
    IFS=';' read -r -a settings <<<"${PG_SET:-}"
    if [ -n "${PG_PROFILE:-}" ]; then settings+=("log_min_duration_statement=0"); fi
    for setting in "${settings[@]}"; do
      [ -n "$setting" ] || continue
      psql_admin -c "ALTER DATABASE \"$db\" SET ${setting%%=*} = '${setting#*=}'" >/dev/null
      log "  ALTER DATABASE $db SET ${setting%%=*} = '${setting#*=}'"
    done
    store=$(printf 'backend = "postgres"\nurl = "%s/%s"\nmax_connections = %s' "$PG_SERVER" "$db" "$PG_POOL")
  fi
  if [ "$cfg" = pg3 ]; then
    prefix="posthorn-bench-$$-$round:"
    redis_prefixes+=("$prefix")
    extra=$(printf '[cluster]\nnode_timeout = "30s"\n[ratelimit]\nbackend = "redis"\nredis_url = "%s"\nredis_prefix = "%s"' "$REDIS_URL" "$prefix")
  fi

  local ports=()
  for i in $(seq "$nodes"); do
    local delivery=""
    if [ "$cfg" != sqlite1 ]; then delivery="node_id = \"n$i\""; fi
    node_setup "$dir" "$i" "$sink_port" "$store" "$delivery" "$extra"
    ports+=("$node_port")
    # The store once (the nodes share it on PostgreSQL); every data dir
    # exists for its node's certificate and files.
    if [ "$i" = 1 ]; then POSTHORN_STORE=$store provision 2>>"$LOG"; else mkdir -p "$work/posthorn"; fi
  done
  for i in $(seq "$nodes"); do
    work=$dir/n$i
    posthorn_serve "$work/posthorn.log"
    node_pids+=("$server")
    server=""
  done
  for i in $(seq "$nodes"); do
    wait_for_port "${ports[$((i - 1))]}" "${node_pids[$((i - 1))]}" ||
      { cat "$dir/n$i/posthorn.log" >&2; echo "node $i did not start" >&2; return 1; }
  done
  if [ "$cfg" != sqlite1 ]; then
    work=$dir/n1
    POSTHORN_STORE=$store posthorn_cli cluster status >>"$LOG" 2>&1 || true
  fi

  # Idle window: PostgreSQL's background rate with the nodes up, no load.
  local pg_idle0 pg_idle1 pg_idle_rate="-"
  pg_idle0=$(pg_ticks)
  sleep 2
  pg_idle1=$(pg_ticks)
  if [ "$pg_idle0" != - ] && [ "$pg_idle1" != - ]; then
    pg_idle_rate=$(python3 -c "print(f'{($pg_idle1 - $pg_idle0) / $CLK_TCK / 2 * 1000:.0f}')")
  fi
  log "  PostgreSQL idle: $pg_idle_rate ms of CPU per s (nodes up, no load)"

  local ph0 pg0 stat0 t0 rd0="" snap0=""
  if [ -n "$db" ]; then snap0=$(pg_snapshot "$db"); fi
  ph0=$(cpu pids "${node_pids[@]}")
  if [ "$cfg" = pg3 ] && [ -n "$redis_pid" ]; then rd0=$(cpu pids "$redis_pid"); fi
  pg0=$pg_idle1
  stat0=$(cpu stat)
  local cl0 sk0
  cl0=$(cpu children $$)
  sk0=$(cpu pids "$sink_pid" "$reader_pid")
  local prof_at=""
  if [ -n "${PG_PROFILE:-}" ] && [ -n "$pg_log" ]; then prof_at=$(stat -c %s "$pg_log"); fi
  t0=$(now)

  # The client(s).
  local outs=() s_left=$SESSIONS m_left=$MESSAGES
  for i in $(seq "$nodes"); do
    local left=$((nodes - i + 1)) s m
    s=$(((s_left + left - 1) / left)) m=$(((m_left + left - 1) / left))
    s_left=$((s_left - s)) m_left=$((m_left - m))
    local args=(--server "127.0.0.1:${ports[$((i - 1))]}" --sessions "$s" --messages "$m"
      --size "$SIZE" --reuse --pipelining --tls starttls --user load@bench.test
      --password bench-password --json --timeout 60 --duration-limit "$LIMIT_SECS")
    log "  loadgen ${args[*]}"
    "$LOADGEN" "${args[@]}" >"$dir/loadgen-$i.json" 2>"$dir/loadgen-$i.err" &
    client_pids+=($!)
    outs+=("$dir/loadgen-$i.json")
  done
  for i in "${!client_pids[@]}"; do
    wait "${client_pids[$i]}" || log "  loadgen $((i + 1)) exited $?: $(head -c 300 "$dir/loadgen-$((i + 1)).err")"
  done
  client_pids=()
  cat "$dir"/loadgen-*.err >>"$LOG"

  local ok failed rate p50 p99 elapsed problems
  read -r ok failed rate p50 p99 elapsed problems < <(loadgen_summary "${outs[@]}")
  log "  loadgen: $ok ok, $failed failed, $rate/s over ${elapsed}s, p50 $p50 ms, p99 $p99 ms; not 2xx / errors: $problems"
  [ "$problems" = "-" ] || warn "$cfg" "loadgen saw: $problems"
  [ "$ok" -eq "$MESSAGES" ] || warn "$cfg" "loadgen: $ok of $MESSAGES messages accepted"

  # Delivery: until the sink has counted every accepted message.
  local t1="" deadline got
  deadline=$(($(date +%s) + timeout))
  while :; do
    if [ "$ok" -eq "$MESSAGES" ] && [ -f "$sink_dir/done" ]; then t1=$(cat "$sink_dir/done"); break; fi
    got=$(sink_count)
    if [ "$ok" -ne "$MESSAGES" ] && [ "$got" -ge "$ok" ]; then t1=$(now); break; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      warn "$cfg" "the sink has $got of $ok accepted messages after ${timeout}s"
      t1=$(now)
      break
    fi
    sleep 0.05
  done
  sleep 0.5 # the nodes record the deliveries
  local snap1="" pgstats="-"
  if [ -n "$db" ]; then
    sleep 1 # backends report their statistics at most once a second
    snap1=$(pg_snapshot "$db")
    pgstats=$(python3 -c '
import sys
a, b, n = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3])
d = [int(float(y)) - int(float(x)) for x, y in zip(a, b)]
n = max(n, 1)
print(f"{d[0] / n:.2f} xacts, {d[2] / n:.1f} rows written, {d[5] / n / 1024:.1f} KiB WAL, {d[6] / n:.2f} WAL fsyncs per message")
' "$snap0" "$snap1" "$ok")
    log "  PostgreSQL, this database (pg_stat_database) and the server's WAL (pg_stat_wal): $pgstats"
    log "    before: $snap0"
    log "    after:  $snap1"
    {
      echo "  tables (pg_stat_user_tables): name inserted updated (hot) deleted seq_scan idx_scan"
      psql "$PG_SERVER/$db" -X -q -A -t -F ' ' -c "select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, seq_scan, idx_scan
        from pg_stat_user_tables where n_tup_ins + n_tup_upd + n_tup_del + seq_scan + coalesce(idx_scan, 0) > 0 order by relname" | sed 's/^/    /'
    } >>"$LOG" 2>&1 || true
    if [ -n "$prof_at" ]; then
      statement_profile "$pg_log" "$prof_at" "$db" "$ok" >>"$LOG" 2>&1 || true
    fi
  fi

  local ph1 pg1 stat1 ours="-" backend_pids
  ph1=$(cpu pids "${node_pids[@]}")
  pg1=$(pg_ticks)
  stat1=$(cpu stat)
  local cl1 sk1
  cl1=$(cpu children $$)
  sk1=$(cpu pids "$sink_pid" "$reader_pid")
  if [ -n "$db" ] && [ -n "$pg_master" ]; then
    backend_pids=$(psql_admin -c "select pid from pg_stat_activity where datname = '$db'" | tr '\n' ' ')
    # shellcheck disable=SC2086 # a list of pids
    ours=$(cpu pids $backend_pids)
    log "  this database's backends at the end: $(wc -w <<<"$backend_pids") ($backend_pids), ${ours} ticks in their lifetime"
  fi
  local redis_cpu="-"
  if [ -n "$rd0" ]; then
    redis_cpu=$(python3 -c "print(f'{($(cpu pids "$redis_pid") - $rd0) / $CLK_TCK / max($ok, 1) * 1000:.3f}')")
    log "  Redis: ${redis_cpu} s of CPU per 1,000 messages; keys under $prefix: $(redis-cli -u "$REDIS_URL" --scan --pattern "$prefix*" | wc -l)"
  fi

  # Checks: the store and the sink against the client.
  local stored delivered=0 _
  work=$dir/n1
  stored=$(POSTHORN_STORE=$store posthorn_stored)
  for _ in $(seq "$timeout"); do
    delivered=$(POSTHORN_STORE=$store posthorn_delivered)
    [ "$delivered" -ge "$stored" ] && break
    sleep 1
  done
  sleep 0.3
  got=$(sink_count)
  log "  check: $stored messages in the store, $delivered recipients delivered, the sink counted $got, the client $ok accepted"
  [ "$stored" -eq "$ok" ] || warn "$cfg" "the client had $ok messages accepted, the store holds $stored"
  [ "$delivered" -eq "$stored" ] || warn "$cfg" "$delivered of $stored recipients delivered after ${timeout}s"
  [ "$got" -eq "$ok" ] || warn "$cfg" "the sink counted $got messages, the client had $ok accepted"
  if [ "$cfg" != sqlite1 ]; then
    POSTHORN_STORE=$store posthorn_cli cluster status >>"$LOG" 2>&1 || true
  fi

  stop_nodes
  sink_stop
  for i in $(seq "$nodes"); do
    if grep -qiE 'error|panic' "$dir/n$i/posthorn.log"; then
      warn "$cfg" "node $i log: $(grep -ciE 'error|panic' "$dir/n$i/posthorn.log") lines with error/panic, e.g. $(grep -iE 'error|panic' "$dir/n$i/posthorn.log" | head -n 1 | cut -c1-200)"
    fi
    { echo "  --- node $i log (last 50 lines)"; tail -n 50 "$dir/n$i/posthorn.log"; } >>"$LOG"
  done
  if [ -n "$db" ]; then drop_database "$db"; fi
  if [ -n "$prefix" ]; then drop_redis_keys "$prefix"; fi

  # The row.
  local e2e ph pg pgours busy
  read -r e2e ph pg pgours busy others < <(python3 - "$ok" "$t0" "$t1" "$ph0" "$ph1" "$pg0" "$pg1" "$ours" "$stat0" "$stat1" "$CLK_TCK" \
    "$((cl1 - cl0))" "$((sk1 - sk0))" <<'PY'
import sys
ok, t0, t1, ph0, ph1, pg0, pg1, ours, stat0, stat1, hz, client, sink = sys.argv[1:]
ok, hz = int(ok), int(hz)
per_k = lambda ticks: f"{ticks / hz / ok * 1000:.3f}" if ok else "-"
e2e = f"{ok / (float(t1) - float(t0)):.1f}" if ok else "0"
ph = per_k(int(ph1) - int(ph0))
pg = per_k(int(pg1) - int(pg0)) if "-" not in (pg0, pg1) else "-"
po = per_k(int(ours)) if ours != "-" else "-"
b0, n0 = map(int, stat0.split())
b1, n1 = map(int, stat1.split())
busy = f"{(b1 - b0) / (n1 - n0) * 100:.0f}" if n1 > n0 else "-"
# What the rest of the machine used: busy time less the nodes, the
# PostgreSQL server, the client (and this script's helpers) and the sink.
ours_ticks = int(ph1) - int(ph0) + int(client) + int(sink)
if "-" not in (pg0, pg1):
    ours_ticks += int(pg1) - int(pg0)
others = f"{max(0, (b1 - b0) - ours_ticks) / (n1 - n0) * 100:.0f}" if n1 > n0 else "-"
print(e2e, ph, pg, po, busy, others)
PY
)
  say "  accept $rate/s (p50 $p50 ms, p99 $p99 ms), end to end $e2e/s; CPU s per 1,000 messages: Posthorn $ph, PostgreSQL $pg (this database's backends $pgours); machine ${busy}% busy, ${others}% of it by other processes (not this benchmark's)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$cfg" "$round" "$nodes" "$rate" "$p50" "$p99" "$e2e" "$ph" "$pg" "$pgours" "$busy" "$pg_idle_rate" "$ok" "$redis_cpu" "$pgstats" "$others" >>"$rows"
}

# --- run -------------------------------------------------------------------

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
avx512=no
grep -qw avx512f /proc/cpuinfo && avx512=yes
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(now)
say "cluster: configurations [$CONFIGS], $ROUNDS round(s); MESSAGES=$MESSAGES SESSIONS=$SESSIONS SIZE=$SIZE DKIM=$DKIM NODES=$NODES PG_POOL=$PG_POOL; $(nproc) CPUs ($cpu_model, AVX-512 $avx512); $(psql_admin -c 'show server_version') ; log in $LOG"
say "load average before: $load_before"
log "PostgreSQL: $(psql_admin -c "select string_agg(name || '=' || setting, ' ') from pg_settings where name in ('synchronous_commit','fsync','commit_delay','shared_buffers','wal_level','max_connections','full_page_writes','wal_sync_method')")"
log "PostgreSQL connections before: $(psql_admin -c "select coalesce(string_agg(coalesce(datname, '-') || ':' || n, ' '), 'none') from (select datname, count(*) n from pg_stat_activity group by 1) x")"
[ -n "$pg_master" ] || say "PostgreSQL's postmaster is not readable in /proc here: no PG CPU columns"
for round in $(seq "$ROUNDS"); do
  for cfg in $CONFIGS; do
    run_config "$cfg" "$round"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
finished=$(now)
say "load average after: $load_after"

# --- the table -------------------------------------------------------------

if [ -n "${POSTHORN_COMMIT:-}" ]; then
  commit=$POSTHORN_COMMIT
elif [ -n "$built" ]; then
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit + uncommitted changes"; fi
else
  commit="BIN=$BIN (set POSTHORN_COMMIT to name its commit)"
fi
python3 - "$rows" "$warnings" "$OUT" "$commit" "$DKIM" "$load_before" "$load_after" "$started" "$finished" \
  "$(nproc)" "$cpu_model" "$avx512" "$MESSAGES" "$SESSIONS" "$SIZE" <<'PY'
import sys, time
(rows_file, warn_file, out, commit, dkim, load_before, load_after, started, finished,
 ncpu, cpu_model, avx512, messages, sessions, size) = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(rows_file) if l.strip()]
warns = [l.rstrip("\n").split("\t", 1) for l in open(warn_file) if l.strip()]
runs = {}
for r in rows:
    runs.setdefault(r[0], []).append(r)
order = ["sqlite1", "pg1", "pg3"]
desc = {"sqlite1": "1 node, SQLite (embedded)", "pg1": "1 node, PostgreSQL", "pg3": None}
picked = {}
for cfg in order:
    if cfg not in runs:
        continue
    rs = sorted(runs[cfg], key=lambda r: float(r[3]))
    pick = rs[(len(rs) - 1) // 2]
    note = f"{pick[12]} msgs"
    if len(rs) > 1:
        note = f"median of {len(rs)} rounds (accept {float(rs[0][3]):,.0f}-{float(rs[-1][3]):,.0f}/s, e2e " \
               f"{min(float(r[6]) for r in rs):,.0f}-{max(float(r[6]) for r in rs):,.0f}/s); {note}"
    if pick[11] != "-":
        note += f"; PG idle {pick[11]} ms CPU/s"
    if pick[13] != "-":
        note += f"; Redis {pick[13]} s CPU/1k msg"
    if pick[14] != "-":
        note += f"; {pick[14]}"
    picked[cfg] = (pick, note)
base = float(picked["sqlite1"][0][3]) if "sqlite1" in picked else None
head = ["configuration", "accept/s", "p50 ms", "p99 ms", "e2e/s", "vs sqlite1",
        "Posthorn CPU s/1k msg", "PG CPU s/1k msg", "PG backends s/1k msg", "busy %", "others %", "notes"]
table = []
for cfg in order:
    if cfg not in picked:
        continue
    r, note = picked[cfg]
    name = desc[cfg] or f"{r[2]} nodes, PostgreSQL + Redis"
    vs = f"{float(r[3]) / base:.0%}" if base and cfg != "sqlite1" else ""
    num = lambda v: v if v == "-" else f"{float(v):,.0f}"
    table.append([f"{cfg}: {name}", num(r[3]), r[4], r[5], num(r[6]), vs, r[7], r[8], r[9], r[10], r[15], note])

def text(rows):
    cols = list(zip(*([head] + rows)))
    width = [max(len(c) for c in col) for col in cols[:-1]]
    lines = []
    for r in [head] + rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r[:-1], width))]
        lines.append("  ".join(cells) + "  " + r[-1])
    return "\n".join(lines)

extra = []
if "pg1" in picked and base:
    ratio = float(picked["pg1"][0][3]) / base
    extra.append(f"pg1 accepts at {ratio:.0%} of sqlite1's rate (target >= 60 %: {'met' if ratio >= 0.6 else 'NOT met'}).")
for cfg in ("pg1", "pg3"):
    if cfg in picked and picked[cfg][0][8] != "-":
        ms = float(picked[cfg][0][8])  # s per 1,000 = ms per message
        if ms > 0:
            extra.append(f"{cfg}: PostgreSQL used {ms:.3f} ms of CPU per message: a database machine with C cores "
                         f"bounds a cluster at about C / {ms / 1000:.6f} s = {1000 / ms:,.0f} x C messages/s "
                         f"({int(ncpu) * 1000 / ms:,.0f}/s for this machine's {ncpu}).")

print()
print(text(table))
for e in extra:
    print(e)
for cfg, w in warns:
    print(f"WARNING {cfg}: {w}")
if not warns:
    print("checks: every accepted message was stored, delivered and counted by the sink once; no non-2xx replies, no connection errors, no errors in the node logs")

md = [f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}; Posthorn {commit}; {ncpu} CPUs ({cpu_model}, AVX-512 {avx512}); "
      f"{messages} messages x {size} B, {sessions} sessions, STARTTLS + AUTH PLAIN, reuse, PIPELINING; DKIM {dkim}; "
      f"load average before {load_before.split()[0]}, after {load_after.split()[0]}; "
      f"{float(finished) - float(started):.0f} s in all.", ""]
md.append("| " + " | ".join(head) + " |")
md.append("|" + "|".join("---" if i in (0, len(head) - 1) else "---:" for i in range(len(head))) + "|")
for r in table:
    md.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
md.append("")
md.extend(extra)
if extra:
    md.append("")
if warns:
    for cfg, w in warns:
        md.append(f"- WARNING {cfg}: {w}")
else:
    md.append("Checks passed: every accepted message was stored, delivered and counted by the sink once; no non-2xx replies, no connection errors, no errors in the node logs.")
open(out, "w").write("\n".join(md) + "\n")
print(f"\nmarkdown: {out}\nlog: {sys.argv[3][:-3]}.log")
PY
