#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document:
# schemathesis (pinned in requirements.txt) generates requests from
# GET /openapi.json and checks every answer: no 5xx, the status is one the
# document lists, the body matches its schema, the content type is the
# documented one. Runs the real `posthorn serve` (delivery off, no rate
# limits) on free loopback ports with a fresh data directory.
#
#   bash tests/schemathesis/run.sh            # builds target/debug/posthorn
#   POSTHORN_BIN=path/to/posthorn bash tests/schemathesis/run.sh
#
# Knobs: ST_MAX_EXAMPLES (cases per operation and phase, default 40),
# ST_SEED (default 1), ST_VENV (default target/schemathesis-venv),
# ST_KEEP=1 keeps the data directory and the reports.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."

max_examples="${ST_MAX_EXAMPLES:-40}"
seed="${ST_SEED:-1}"
venv="${ST_VENV:-$PWD/target/schemathesis-venv}"

# The binary: the one .ci/run's `cargo test` built, or build it (debug,
# the profile `cargo test` uses, so nothing is built twice).
if [ -z "${POSTHORN_BIN:-}" ]; then
  cargo build --quiet -p posthorn --bin posthorn
  POSTHORN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/posthorn"
fi
[ -x "$POSTHORN_BIN" ] || { echo "schemathesis: no binary at $POSTHORN_BIN" >&2; exit 1; }

# schemathesis in its own venv, made again when requirements.txt changes.
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req"
  echo "$want" >"$stamp"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/posthorn-schemathesis.XXXXXX")"
data="$work/data"
server_pid=""
dns_pid=""
cleanup() {
  local pid
  for pid in $server_pid $dns_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "${ST_KEEP:-0}" = 1 ]; then
    echo "schemathesis: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# Nothing leaves loopback: the domain check asks a stub name server that
# answers NXDOMAIN, and webhook POSTs (none are expected: delivery is off)
# would go to a proxy address where nothing listens.
python3 "$here/dns_stub.py" "$work/dns-port" &
dns_pid=$!
for _ in $(seq 1 50); do [ -s "$work/dns-port" ] && break; sleep 0.1; done
[ -s "$work/dns-port" ] || { echo "schemathesis: the DNS stub did not start" >&2; exit 1; }
dns_port="$(cat "$work/dns-port")"

cat >"$work/posthorn.toml" <<EOF
[delivery]
enabled = false
nameservers = ["127.0.0.1:$dns_port"]
EOF
ph() { "$POSTHORN_BIN" --config "$work/posthorn.toml" --data-dir "$data" "$@"; }

ph account create shop >/dev/null
ph domain add example.com --account shop >/dev/null
ph sender add app@example.com --account shop --password 'x-schemathesis-password' >/dev/null
ph label add newsletter --account shop >/dev/null
for key in messages_per_second pair_per_hour api_calls_per_minute; do
  ph account set shop "$key" 0 >/dev/null
done
account_key="$(ph apikey create --account shop --description schemathesis)"
admin_key="$(ph apikey create --admin --description schemathesis)"

# Three free loopback ports (free when asked; the server binds them next).
read -r http_port smtps_port submission_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
base="http://127.0.0.1:$http_port"

HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9 NO_PROXY= \
  "$POSTHORN_BIN" --config "$work/posthorn.toml" --data-dir "$data" \
  serve --http "127.0.0.1:$http_port" --smtps "127.0.0.1:$smtps_port" \
  --submission "127.0.0.1:$submission_port" >"$work/server.log" 2>&1 &
# The server itself, not a subshell around `ph` (whose kill left it running).
server_pid=$!

for _ in $(seq 1 100); do
  if NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 python3 -c \
    "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "$base/readyz" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis: posthorn serve exited:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

checks="${ST_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}"
st_run() {
  local name="$1" key="$2"
  shift 2
  echo "== schemathesis: $name"
  NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 SCHEMATHESIS_HOOKS="$here/hooks.py" \
    "$venv/bin/st" run "$base/openapi.json" \
    --checks "$checks" \
    --max-examples "$max_examples" \
    --seed "$seed" --generation-deterministic \
    --workers 2 \
    --request-timeout 10 \
    --header "Authorization: Bearer $key" \
    --no-color \
    --report junit --report-dir "$work/report-$name" \
    "$@"
}

status=0
failed=()
# st_check NAME KEY ARGS...: one run; a failing run is named at the end.
st_check() {
  local rc=0
  st_run "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "schemathesis: run '$1' exited $rc" >&2
    failed+=("$1")
    status=1
  fi
}
# Account routes with the account key, admin routes with the admin key.
# The admin routes' only parameter is often a free-form name in the path;
# hypothesis throws away the generated names a path cannot carry (empty,
# '/', '.', '..') and would call that too much filtering.
# The same for the message id in GET /v1/messages/{id}: a 26-character
# Crockford base-32 pattern that hypothesis meets by filtering, which now
# and then trips its health check (seen once in three CI runs).
# Hypothesis's too_slow check times its own data generation against the
# wall clock, so it says how fast the machine is, not how the API behaves:
# off too (it failed three admin routes on a slow host on 2026-12-07,
# while all 840 cases generated for the admin routes passed).
suppress=filter_too_much,too_slow
st_check account "$account_key" --exclude-tag admin --suppress-health-check "$suppress"
st_check admin "$admin_key" --include-tag admin --suppress-health-check "$suppress"
# Each key on the other's routes: only the refusal (401/403 as documented)
# is at stake, so a few cases per operation are enough, and schemathesis's
# warning that every answer was a 401/403 is the point here.
st_check admin-key-on-account-routes "$admin_key" --exclude-tag admin --exclude-tag operations \
  --max-examples 5 --phases examples,fuzzing --warnings off
st_check account-key-on-admin-routes "$account_key" --include-tag admin \
  --max-examples 5 --phases examples,fuzzing --warnings off --suppress-health-check "$suppress"

# A 5xx that schemathesis saw is in its report; a panic or an error the
# server only logged is caught here.
if grep -E "panicked|ERROR" "$work/server.log" >&2; then
  echo "schemathesis: the server logged the errors above" >&2
  status=1
fi

if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED (${failed[*]:-server log}; server log: last lines below)" >&2
  tail -n 40 "$work/server.log" >&2
  exit 1
fi
echo "schemathesis: the API answers as its document says"
