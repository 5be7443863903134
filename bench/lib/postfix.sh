# shellcheck shell=bash
# A private Postfix instance for benchmarks, sourced by bench scripts:
#
#   . bench/lib/postfix.sh
#   postfix_install                       # apt-get install postfix if missing
#   postfix_setup WORKDIR LISTEN_PORT RELAY_PORT
#   postfix_start                         # smtpd on 127.0.0.1:LISTEN_PORT
#   postfix_hold_all                      # queued and all later mail stays on hold
#   ... inject with smtp-source ...
#   postfix_release_all                   # hold -> deliver now, to [127.0.0.1]:RELAY_PORT
#   postfix_queue_count [QUEUE...]        # files in maildrop/incoming/active/deferred/hold
#   postfix_stop                          # idempotent; safe in an EXIT trap
#
#   postfix_tls CERT KEY                  # after setup: STARTTLS offered, AUTH only after it
#   postfix_sasl USER PASSWORD            # after setup: AUTH PLAIN/LOGIN via Cyrus sasldb,
#                                         # relaying only for logged-in clients
#   postfix_dkim DOMAIN SELECTOR          # after setup: an OpenDKIM milter signs mail from
#                                         # DOMAIN (RSA-2048, relaxed/relaxed), as Posthorn does
#   postfix_master_pid                    # the running instance's master (for RSS sampling)
#
# One instance at a time per sourcing shell (the POSTFIX_* globals below
# describe it). Everything lives under WORKDIR/postfix: its own config_directory (etc),
# queue_directory (queue), data_directory (data) and log file (maillog).
# Every command here passes -c, so the system instance (/etc/postfix, which
# Debian's "No configuration" install leaves without a main.cf) is never
# read, started or stopped. Loopback only: inet_interfaces = 127.0.0.1,
# mydestination empty (nothing is delivered locally), relayhost =
# [127.0.0.1]:RELAY_PORT (no DNS, no MX lookup). No TLS in either
# direction unless postfix_tls turns it on for smtpd, no SASL unless
# postfix_sasl does. Must run as root (Postfix's master does).
#
# Performance settings (concurrency, process limits, connection cache) are
# left at Postfix's defaults so comparisons are fair; postfix_print_settings
# shows the ones that matter for delivery. The one non-default is
# in_flow_delay = 0: it only paces smtpd while the queue manager is behind,
# and with mail on hold the queue manager never catches up, so the default
# 1 s would throttle filling the queue to about one message per second per
# session. It has no effect on delivery.

POSTFIX_DIR=""          # WORKDIR/postfix
POSTFIX_CONF=""         # config_directory
POSTFIX_QUEUE=""        # queue_directory
POSTFIX_LOG=""          # maillog_file
POSTFIX_PORT=""         # smtpd listens on 127.0.0.1:POSTFIX_PORT
POSTFIX_RELAY_PORT=""   # relayhost = [127.0.0.1]:POSTFIX_RELAY_PORT

# postfix_install: install the postfix package (smtp-source, smtp-sink and
# the daemons) without configuring the system instance.
postfix_install() {
  if [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ]; then
    return 0
  fi
  echo "installing postfix (No configuration)..." >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
}

# postfix_install_sasl: also the Cyrus SASL tools and mechanisms that
# postfix_sasl needs (saslpasswd2; the sasldb, PLAIN and LOGIN plugins).
# Runs apt-get update first when a package is missing.
postfix_install_sasl() {
  local missing=() p
  for p in postfix sasl2-bin libsasl2-modules; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (postfix: No configuration)..." >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# postfix_setup WORKDIR LISTEN_PORT RELAY_PORT: write main.cf and master.cf
# for a private instance under WORKDIR/postfix. Does not start it.
postfix_setup() {
  local workdir=$1 port=$2 relay_port=$3
  if [ "$(id -u)" -ne 0 ]; then
    echo "postfix_setup: must run as root" >&2
    return 1
  fi
  POSTFIX_DIR=$(cd "$workdir" && pwd)/postfix
  POSTFIX_CONF=$POSTFIX_DIR/etc
  POSTFIX_QUEUE=$POSTFIX_DIR/queue
  POSTFIX_LOG=$POSTFIX_DIR/maillog
  POSTFIX_PORT=$port
  # shellcheck disable=SC2034 # for callers
  POSTFIX_RELAY_PORT=$relay_port
  # The daemons run as user postfix and open paths under here by absolute
  # name, so every directory on the way must be searchable (mktemp -d makes
  # 0700 ones).
  chmod go+x "$workdir"
  mkdir -p "$POSTFIX_CONF" "$POSTFIX_QUEUE" "$POSTFIX_DIR/data"
  chmod 755 "$POSTFIX_DIR" "$POSTFIX_CONF" "$POSTFIX_QUEUE"
  chown postfix "$POSTFIX_DIR/data"
  : >"$POSTFIX_LOG"

  cat >"$POSTFIX_CONF/main.cf" <<EOF
# Private benchmark instance (bench/lib/postfix.sh); not the system Postfix.
compatibility_level = 3.6
queue_directory = $POSTFIX_QUEUE
data_directory = $POSTFIX_DIR/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = $POSTFIX_LOG
maillog_file_prefixes = $POSTFIX_DIR
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$relay_port
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
in_flow_delay = 0
EOF

  # Only the services a relay needs, none chrooted (a chroot would need
  # copies of /etc files inside the private queue directory).
  cat >"$POSTFIX_CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port inet n   -       n       -       -       smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
postlog    unix-dgram n  -       n       -       1       postlogd
EOF
}

# postfix_dkim DOMAIN SELECTOR: every message smtpd accepts from DOMAIN is
# DKIM-signed by an OpenDKIM milter (Debian's opendkim, its own config, key
# and pid file under WORKDIR/postfix/opendkim; RSA-2048, rsa-sha256,
# relaxed/relaxed, OpenDKIM's default header list), so Postfix does the
# work Posthorn does on every message. A milter that does not answer makes
# smtpd answer 4xx (milter_default_action = tempfail): nothing unsigned
# passes for signed. postfix_stop stops it. Call after postfix_setup,
# before postfix_start.
POSTFIX_DKIM_PIDFILE=""
postfix_dkim() {
  _postfix_need_setup
  local domain=$1 selector=$2 dir=$POSTFIX_DIR/opendkim sock _
  if ! command -v opendkim >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opendkim opendkim-tools >/dev/null
  fi
  mkdir -p "$dir"
  opendkim-genkey -b 2048 -d "$domain" -s "$selector" -D "$dir"
  # A unix socket: over loopback TCP, the milter's small writes meet
  # delayed ACKs and every message waited about 90 ms.
  sock=$dir/opendkim.sock
  POSTFIX_DKIM_PIDFILE=$dir/opendkim.pid
  cat >"$dir/opendkim.conf" <<CONF
Mode s
Domain $domain
Selector $selector
KeyFile $dir/$selector.private
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/relaxed
InternalHosts 127.0.0.0/8
Socket local:$sock
UMask 000
PidFile $POSTFIX_DKIM_PIDFILE
RequireSafeKeys no
Syslog no
CONF
  opendkim -x "$dir/opendkim.conf" || { echo "postfix_dkim: opendkim did not start" >&2; return 1; }
  for _ in $(seq 100); do
    [ -S "$sock" ] && break
    sleep 0.05
  done
  [ -S "$sock" ] || { echo "postfix_dkim: opendkim made no socket $sock" >&2; return 1; }
  postconf -c "$POSTFIX_CONF" -e \
    "smtpd_milters = unix:$sock" \
    "non_smtpd_milters = unix:$sock" \
    "milter_default_action = tempfail"
}

# postfix_tls CERT KEY: smtpd offers STARTTLS with this certificate and
# key (PEM) and offers AUTH only after it (smtpd_tls_auth_only, as Posthorn
# does). Other TLS settings stay at Postfix's defaults (TLS 1.2 and 1.3,
# session tickets). Call after postfix_setup, before postfix_start (or
# reload).
postfix_tls() {
  _postfix_need_setup
  install -m 644 "$1" "$POSTFIX_CONF/cert.pem"
  install -m 600 "$2" "$POSTFIX_CONF/key.pem"
  postconf -c "$POSTFIX_CONF" -e \
    smtpd_tls_security_level=may \
    "smtpd_tls_cert_file=$POSTFIX_CONF/cert.pem" \
    "smtpd_tls_key_file=$POSTFIX_CONF/key.pem" \
    smtpd_tls_auth_only=yes \
    smtpd_tls_loglevel=0
}

# postfix_sasl USER PASSWORD: AUTH PLAIN and LOGIN through Cyrus SASL with
# a private sasldb (auxprop), and relaying only for logged-in clients
# (smtpd_relay_restrictions = permit_sasl_authenticated, reject), so every
# message is sent by a client that logged in. USER is user@realm, the way
# saslpasswd2 -u stores it. Chroot is off in this instance's master.cf, so
# smtpd (user postfix) reads the sasldb and smtpd.conf where they are.
postfix_sasl() {
  _postfix_need_setup
  local user=${1%@*} realm=${1#*@} db=$POSTFIX_DIR/sasldb2
  mkdir -p "$POSTFIX_CONF/sasl"
  cat >"$POSTFIX_CONF/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $db
EOF
  rm -f "$db"
  printf '%s' "$2" | saslpasswd2 -p -c -f "$db" -u "$realm" "$user"
  chown root:postfix "$db"
  chmod 640 "$db"
  postconf -c "$POSTFIX_CONF" -e \
    smtpd_sasl_auth_enable=yes \
    smtpd_sasl_type=cyrus \
    smtpd_sasl_path=smtpd \
    "cyrus_sasl_config_path=$POSTFIX_CONF/sasl" \
    smtpd_sasl_security_options=noanonymous \
    "smtpd_relay_restrictions=permit_sasl_authenticated, reject"
}

# postfix_master_pid: the pid of the running instance's master process.
postfix_master_pid() {
  _postfix_need_setup
  local pidfile=$POSTFIX_QUEUE/pid/master.pid
  [ -f "$pidfile" ] && tr -dc '0-9' <"$pidfile"
}

_postfix_need_setup() {
  if [ -z "$POSTFIX_CONF" ]; then
    echo "bench/lib/postfix.sh: call postfix_setup first" >&2
    return 1
  fi
}

# postfix_running: true while the private instance's master runs.
postfix_running() {
  [ -n "$POSTFIX_CONF" ] && postfix -c "$POSTFIX_CONF" status >/dev/null 2>&1
}

# postfix_start: start the instance and wait until smtpd accepts connections.
postfix_start() {
  _postfix_need_setup
  postfix -c "$POSTFIX_CONF" start >>"$POSTFIX_DIR/start.log" 2>&1 || {
    echo "postfix_start failed:" >&2
    cat "$POSTFIX_DIR/start.log" "$POSTFIX_LOG" >&2
    return 1
  }
  local _
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$POSTFIX_PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "postfix_start: nothing listens on 127.0.0.1:$POSTFIX_PORT" >&2
  cat "$POSTFIX_LOG" >&2
  return 1
}

# postfix_stop: stop the instance (if it runs) and wait for its master to
# exit. Never fails, so it can sit in an EXIT trap.
postfix_stop() {
  [ -n "$POSTFIX_CONF" ] || return 0
  local pidfile=$POSTFIX_QUEUE/pid/master.pid pid="" _
  [ -f "$pidfile" ] && pid=$(tr -dc '0-9' <"$pidfile")
  if postfix_running; then
    postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || true
  fi
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    # Still there after 10 s: this instance's master only, by its pid.
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ -n "$POSTFIX_DKIM_PIDFILE" ] && [ -f "$POSTFIX_DKIM_PIDFILE" ]; then
    kill "$(tr -dc '0-9' <"$POSTFIX_DKIM_PIDFILE")" 2>/dev/null || true
  fi
  POSTFIX_DKIM_PIDFILE=""
  return 0
}

# postfix_reload: make a running instance re-read main.cf.
postfix_reload() {
  _postfix_need_setup
  if postfix_running; then
    postfix -c "$POSTFIX_CONF" reload >/dev/null 2>&1
    sleep 1 # smtpd processes pick the new settings up as they restart
  fi
}

# postfix_hold_incoming on|off: put every message smtpd accepts from now on
# in the hold queue (the access action HOLD, once per message at DATA), or
# stop doing so. Reloads a running instance.
postfix_hold_incoming() {
  _postfix_need_setup
  case $1 in
    on) postconf -c "$POSTFIX_CONF" -e 'smtpd_data_restrictions = check_client_access static:HOLD' ;;
    off) postconf -c "$POSTFIX_CONF" -X smtpd_data_restrictions ;;
    *) echo "postfix_hold_incoming on|off" >&2; return 2 ;;
  esac
  postfix_reload
}

# postfix_hold_all: hold what is queued now and everything accepted later;
# nothing is delivered until postfix_release_all.
postfix_hold_all() {
  postfix_hold_incoming on
  if [ -d "$POSTFIX_QUEUE/hold" ]; then
    postsuper -c "$POSTFIX_CONF" -h ALL 2>/dev/null || true
  fi
}

# postfix_release_all: move everything on hold to the deferred queue and
# ask the queue manager to deliver all of it now (postqueue -f scans the
# deferred queue ignoring its time stamps). Does not change the inbound
# hold (postfix_hold_incoming off does, with a reload: keep that out of a
# timed section). Needs a running instance.
postfix_release_all() {
  _postfix_need_setup
  postsuper -c "$POSTFIX_CONF" -H ALL 2>/dev/null
  postqueue -c "$POSTFIX_CONF" -f
}

# postfix_queue_count [QUEUE...]: number of queue files in the named queues
# (default: maildrop incoming active deferred hold), i.e. messages not yet
# delivered or bounced. Counts files directly, which is cheap and needs no
# running instance.
postfix_queue_count() {
  _postfix_need_setup
  local queues=("$@") q n=0 c
  [ ${#queues[@]} -gt 0 ] || queues=(maildrop incoming active deferred hold)
  for q in "${queues[@]}"; do
    if [ -d "$POSTFIX_QUEUE/$q" ]; then
      c=$(find "$POSTFIX_QUEUE/$q" -type f | wc -l)
      n=$((n + c))
    fi
  done
  echo "$n"
}

# postfix_sent_count: deliveries the instance logged as status=sent.
postfix_sent_count() {
  _postfix_need_setup
  grep -c ' status=sent ' "$POSTFIX_LOG" || true
}

# postfix_print_settings: the delivery-relevant settings, all defaults.
postfix_print_settings() {
  _postfix_need_setup
  postconf -c "$POSTFIX_CONF" -x mail_version \
    default_destination_concurrency_limit smtp_destination_concurrency_limit \
    initial_destination_concurrency default_process_limit \
    smtp_connection_cache_on_demand smtp_destination_recipient_limit \
    default_destination_rate_delay qmgr_message_active_limit relayhost
}
