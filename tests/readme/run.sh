#!/usr/bin/env bash
# The README's quick start, exactly as written, in a fresh clone of this
# repository: its first command (the server, in capture mode) in the
# background, then the "first message" steps and the HTTP example, each
# line as the README has it. Passes when the SMTP message and the HTTP
# message are both delivered (captured) and `message show` says so.
#
# Builds reuse this checkout's target directory (CARGO_TARGET_DIR), so after
# `cargo test --workspace` this takes about a minute, not a new build.
# The README's first command listens on 465 and 587, which needs root: run
# as another user, this says so and skips.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ "$(id -u)" != 0 ]; then
  echo "readme: SKIPPED: the README's first command listens on ports 465 and 587, which needs root"
  exit 0
fi
for tool in git swaks curl; do
  command -v "$tool" >/dev/null || { echo "readme: FAILED: $tool is not installed (.ci/run installs it)"; exit 1; }
done
for port in 465 587 2525 8025; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "readme: FAILED: port $port is taken; the README's first command needs it"
    exit 1
  fi
done

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "readme: FAILED: $*"
  echo "--- server log (last 40 lines) ---"
  tail -40 "$work/server.log" 2>/dev/null || true
  exit 1
}

git clone -q "$root" "$work/posthorn"
cd "$work/posthorn"

# The lines of the ```sh block after the marker <!-- readme-test: NAME -->,
# without trailing comments.
block() {
  awk -v tag="<!-- readme-test: $1 -->" '
    $0 == tag { found = 1; next }
    found && /^```sh/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { print }
  ' README.md | sed 's/[[:space:]][[:space:]]*#[[:space:]].*$//'
}

first=$(block start | head -1)
[ -n "$first" ] || fail "no first command found in README.md"
echo "readme: \$ $first"
setsid bash -c "$first" >"$work/server.log" 2>&1 &
server_pid=$!

# The first build may take a while; the server is up when HTTP answers.
for _ in $(seq 900); do
  kill -0 "$server_pid" 2>/dev/null || fail "the first command exited"
  curl -sf http://127.0.0.1:8025/healthz >/dev/null 2>&1 && break
  sleep 1
done
curl -sf http://127.0.0.1:8025/healthz >/dev/null || fail "the server did not come up within 15 minutes"
grep -q "capture mode" "$work/server.log" || fail "the server did not say it runs in capture mode"

run_block() {
  local line
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    echo "readme: \$ $line"
    timeout 600 bash -c "$line" >"$work/out" 2>"$work/err" || {
      cat "$work/err"
      fail "this README line failed: $line"
    }
    cat "$work/out"
  done < <(block "$1")
}

run_block steps
listed=$(cat "$work/out")
id=$(printf '%s\n' "$listed" | awk 'NF { print $1; exit }')
[ -n "$id" ] || fail "queue list printed no message"

# Delivery in capture mode takes a moment: wait for the recipient to be final.
for _ in $(seq 100); do
  shown=$(cargo run -q -p posthorn -- message show "$id")
  printf '%s\n' "$shown" | grep -q "you@example.net  delivered" && break
  sleep 0.2
done
printf '%s\n' "$shown" | grep -q "you@example.net  delivered" || fail "message $id was not delivered (captured): $shown"
printf '%s\n' "$shown" | grep -q "captured" || fail "message $id does not say it was captured: $shown"
cargo run -q -p posthorn -- message content "$id" | grep -q "^Subject:" || fail "message content $id has no Subject"

# The HTTP example: a KEY, then the send; the answer holds the new id.
{
  echo 'set -e'
  block http
} >"$work/http.sh"
echo "readme: \$ (the HTTP example)"
timeout 600 bash "$work/http.sh" >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "the HTTP example failed"; }
cat "$work/out"; echo
http_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["message_id"])' <"$work/out") || fail "the HTTP example did not answer with a message_id"
for _ in $(seq 100); do
  cargo run -q -p posthorn -- message show "$http_id" | grep -q "delivered" && break
  sleep 0.2
done
cargo run -q -p posthorn -- message show "$http_id" | grep -q "delivered" || fail "HTTP message $http_id was not delivered (captured)"

echo "readme: OK: the README's commands work as written (messages $id and $http_id captured)"
