#!/usr/bin/env bash
# First load script: Postfix's smtp-source against a fresh release build of
# Posthorn on loopback, 20 sessions x 5 KB, one message per connection by
# default. Prints messages/second. smtp-source cannot AUTH, so the script
# maps 127.0.0.0/8 to a bench account with [[smtp.trusted_networks]].
#
#   bench/smtp-source.sh [MESSAGES] [SESSIONS] [SIZE_BYTES] [extra smtp-source flags...]
#   bench/smtp-source.sh 20000 20 5120 -d     # -d: reuse each connection for many messages
#
# Needs: smtp-source (Debian package postfix; the script installs it if
# missing and apt-get works).
set -euo pipefail
cd "$(dirname "$0")/.."

messages=${1:-10000}
sessions=${2:-20}
size=${3:-5120}
shift $(( $# < 3 ? $# : 3 ))

if ! command -v smtp-source >/dev/null && [ ! -x /usr/sbin/smtp-source ]; then
  echo "installing postfix for smtp-source..." >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)

# BIN=path runs another build (e.g. an older commit's) instead.
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p posthorn
  BIN=target/release/posthorn
fi

work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

$BIN --data-dir "$work" account create bench >/dev/null
$BIN --data-dir "$work" domain add bench.test --account bench >/dev/null
$BIN --data-dir "$work" sender add load@bench.test --account bench --password bench-password >/dev/null
# Lift the account's rate limits: the load goes to one recipient, fast.
# LIMIT=N sets them to N instead of 0 (no limit), so the limiter still runs
# every check: compare LIMIT=0 with LIMIT=100000000 to see its cost.
$BIN --data-dir "$work" account set bench messages_per_second "${LIMIT:-0}" >/dev/null
$BIN --data-dir "$work" account set bench pair_per_hour "${LIMIT:-0}" >/dev/null
# RATELIMIT_BACKEND=redis runs the limiter on Redis (REDIS_URL or localhost).
ratelimit=""
if [ -n "${RATELIMIT_BACKEND:-}" ]; then
  ratelimit=$(printf '[ratelimit]\nbackend = "%s"\nredis_url = "%s"\nredis_prefix = "posthorn-bench-%s:"' \
    "$RATELIMIT_BACKEND" "${REDIS_URL:-redis://127.0.0.1:6379}" "$$")
fi
cat > "$work/posthorn.toml" <<TOML
hostname = "bench.test"
[smtp]
implicit_tls = ["127.0.0.1:$tls_port"]
starttls = ["127.0.0.1:$port"]
[[smtp.trusted_networks]]
network = "127.0.0.0/8"
account = "bench"
[limits]
new_connections_per_ip_per_minute = 0
$ratelimit
# Accept throughput only: nothing is delivered while it is measured.
[delivery]
enabled = false
[http]
enabled = false
[log]
level = "warn"
TOML

$BIN --config "$work/posthorn.toml" --data-dir "$work" serve 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done

start=$(date +%s.%N)
"$SMTP_SOURCE" -s "$sessions" -m "$messages" -l "$size" -S "load test" -f load@bench.test -t sink@example.net "$@" "127.0.0.1:$port"
end=$(date +%s.%N)

stored=$($BIN --data-dir "$work" queue list | wc -l)
python3 - "$start" "$end" "$messages" "$stored" "$sessions" "$size" <<'PY'
import sys
start, end, sent, stored, sessions, size = map(float, sys.argv[1:])
secs = end - start
print(f"posthorn: {int(sent)} messages x {int(size)} B, {int(sessions)} sessions: "
      f"{secs:.2f} s, {sent/secs:.0f} messages/s; {int(stored)} in the store")
if int(stored) != int(sent):
    sys.exit(f"error: {int(sent)} sent but {int(stored)} stored")
PY
