#!/usr/bin/env bash
# The HTTP API's send path next to SMTP's, on one fresh Posthorn, loopback:
#
#   http     POST /v1/messages (JSON: from, to, subject, a 5 KB text part),
#            wrk with CLIENTS (20) keep-alive connections for SECS (15) s,
#            Bearer API key (verified once, then cached);
#   smtp     posthorn-loadgen, CLIENTS sessions, STARTTLS + AUTH PLAIN,
#            connection reuse, PIPELINING, MESSAGES (20000) x 5 KB;
#   smtp-plain  the same without TLS and AUTH (127.0.0.0/8 trusted).
#
# Each request and each message goes through the same Submitter: policy,
# limits (lifted for the bench account), the group-committed write with
# fsync before the answer. Delivery is off, so only accepting is measured.
# Prints requests or messages per second, latency p50/p99, the server's
# CPU time per message (all threads, and its store-writer thread alone,
# from /proc), and checks that the store holds exactly as many messages as
# were answered 202 / 250.
#
#   bench/http.sh                 # builds release binaries
#   CLIENTS=20 SECS=15 MESSAGES=20000 BIN=target/release/posthorn bench/http.sh
#
# Needs wrk (Debian package wrk; installed if missing) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. bench/lib/common.sh
# shellcheck source-path=SCRIPTDIR source=lib/posthorn.sh
. bench/lib/posthorn.sh

CLIENTS=${CLIENTS:-20}
SECS=${SECS:-15}
MESSAGES=${MESSAGES:-20000}

if ! command -v wrk >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p posthorn -p posthorn-loadgen
  BIN=target/release/posthorn
fi
BIN=$(realpath "$BIN")
LOADGEN=${LOADGEN:-$(dirname "$BIN")/posthorn-loadgen}

work=$(mktemp -d)
trap 'posthorn_stop; rm -rf "$work"' EXIT

# fresh [TRUSTED]: a fresh store and server; sets port, tls_port, http_port, key.
fresh() {
  posthorn_stop
  rm -rf "$work/posthorn"
  posthorn_init
  "$BIN" --data-dir "$work/posthorn" account set bench connections_per_user 0 >/dev/null
  "$BIN" --data-dir "$work/posthorn" account set bench api_calls_per_minute 0 >/dev/null
  key=$("$BIN" --data-dir "$work/posthorn" apikey create --account bench --description bench)
  port=$(free_port)
  tls_port=$(free_port)
  http_port=$(free_port)
  POSTHORN_TRUSTED=${1:-0} POSTHORN_LIMITS="connections_per_ip = 0" posthorn_config false 9 "$port" "$tls_port"
  printf '[http]\nlisten = "127.0.0.1:%s"\n' "$http_port" >>"$work/posthorn.toml"
  posthorn_serve "$work/posthorn.log"
  wait_for_port "$http_port" "$server" || { cat "$work/posthorn.log" >&2; exit 1; }
}

# The JSON body: 5 KB of text in short lines, like the SMTP scenarios'
# messages, which go as 7bit. It ends with a line break: a text ending
# in a space is written quoted-printable (the space must survive
# transport), and the policy's parse then decodes the whole body.
python3 - "$work/body.json" <<'PY'
import json, sys
line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
text = (line * (5120 // len(line) + 1))[:5120 - 1].rstrip() + "\n"
json.dump({"from": "load@bench.test", "to": ["sink@example.net"],
           "subject": "http bench", "text": text}, open(sys.argv[1], "w"))
PY
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer KEY"
local f = io.open("$work/body.json", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.3f %.3f %.3f\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
LUA

results=()

cpu_ticks() { # PID [THREAD-NAME]: utime + stime in clock ticks, of one thread name or all
  if [ -z "${2:-}" ]; then
    awk '{print $14 + $15}' "/proc/$1/stat"
    return
  fi
  local t sum=0
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] && sum=$((sum + $(awk '{print $14 + $15}' "$t/stat")))
  done
  echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)
cpu_start() { cpu0=$(cpu_ticks "$server"); writer0=$(cpu_ticks "$server" store-writer); }
cpu_per_msg() { # MESSAGES: "all µs|writer µs" of server CPU per message since cpu_start
  python3 -c "n = max($1, 1); t = $CLK_TCK
print(f'{($(cpu_ticks "$server") - $cpu0) / t / n * 1e6:.0f}|{($(cpu_ticks "$server" store-writer) - $writer0) / t / n * 1e6:.0f}')"
}

# --- HTTP ---------------------------------------------------------------
fresh 0
sed -i "s|Bearer KEY|Bearer $key|" "$work/post.lua"
# Warm up: the key's argon2 check, the store's first pages.
wrk -t1 -c1 -d1s -s "$work/post.lua" "http://127.0.0.1:$http_port/v1/messages" >/dev/null
before=$(posthorn_stored)
cpu_start
out=$(wrk -t2 -c"$CLIENTS" -d"${SECS}s" --latency -s "$work/post.lua" "http://127.0.0.1:$http_port/v1/messages")
echo "$out" >&2
read -r _ reqs sockerr non2xx dur_us p50 p99 max < <(grep '^RESULT' <<<"$out")
cpu=$(cpu_per_msg "$reqs")
stored=$(($(posthorn_stored) - before))
rate=$(python3 -c "print(f'{$reqs / ($dur_us / 1e6):.0f}')")
results+=("http POST /v1/messages|$CLIENTS keep-alive connections, ${SECS}s|$rate|$p50|$p99|$max|$cpu|$reqs requests, $non2xx not 2xx, $sockerr socket errors, $stored stored")
[ "$sockerr" -eq 0 ] || echo "WARNING: wrk saw $sockerr socket errors" >&2
[ "$non2xx" -eq 0 ] || echo "WARNING: $non2xx HTTP answers were not 2xx" >&2
# wrk may cut requests short at the end of its time: those are not counted
# by wrk but may be stored.
[ "$stored" -ge "$reqs" ] && [ "$stored" -le $((reqs + CLIENTS)) ] ||
  echo "WARNING: wrk counted $reqs answers, the store holds $stored new messages" >&2

# --- SMTP ---------------------------------------------------------------
smtp() { # NAME TLS TRUSTED
  fresh "$3"
  local args=(--server "127.0.0.1:$port" --sessions "$CLIENTS" --messages "$MESSAGES" --size 5120
    --reuse --pipelining --tls "$2" --json --timeout 60)
  [ "$2" != none ] && args+=(--user load@bench.test --password bench-password)
  cpu_start
  "$LOADGEN" "${args[@]}" >"$work/loadgen.json"
  local cpu
  cpu=$(cpu_per_msg "$MESSAGES")
  local stored
  stored=$(posthorn_stored)
  python3 - "$work/loadgen.json" "$1" "$stored" "$CLIENTS" "$cpu" <<'PY' >"$work/row"
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_ms"]
bad = sum(r["replies"].values()) + sum(r["errors"].values()) + r["failed"]
print(f"{sys.argv[2]}|{sys.argv[4]} sessions, reuse, pipelining|{r['messages_per_s']:.0f}|"
      f"{lat['p50']:.3f}|{lat['p99']:.3f}|{lat['max']:.3f}|{sys.argv[5]}|{r['ok']} messages, {bad} not 2xx, {sys.argv[3]} stored")
if r["ok"] != int(sys.argv[3]) or bad:
    print(f"WARNING: {sys.argv[2]}: {r['ok']} accepted, {bad} refused or failed, {sys.argv[3]} stored", file=sys.stderr)
PY
  results+=("$(cat "$work/row")")
}
smtp "smtp STARTTLS + AUTH" starttls 0
smtp "smtp plain, trusted network" none 1
posthorn_stop

echo
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' door load "per s" "p50 ms" "p99 ms" "max ms" \
  "server CPU µs/msg" "store writer µs/msg" check
echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
for r in "${results[@]}"; do
  IFS='|' read -r a b c d e f g h i <<<"$r"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
done
