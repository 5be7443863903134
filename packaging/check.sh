#!/usr/bin/env bash
# Check the packaging files:
#   - posthorn.service passes `systemd-analyze verify` with no complaint at all,
#     and `systemd-analyze security --offline` rates it at most $MAX_EXPOSURE;
#   - posthorn.sysusers is valid for systemd-sysusers;
#   - posthorn.toml uses only keys that posthorn.example.toml documents, and,
#     given a built binary, that binary loads it.
# Usage: packaging/check.sh [PATH-TO-BUILT-POSTHORN]   (e.g. target/debug/posthorn)
# Needs systemd-analyze and systemd-sysusers (Debian: apt-get install systemd).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# systemd-analyze security scale: 0-100, ten times the exposure it prints
# (this unit: 1.5, i.e. 15).
MAX_EXPOSURE=${MAX_EXPOSURE:-25}

bin=${1:-}
if [ -n "$bin" ]; then
  [ -x "$bin" ] || { echo "check.sh: $bin is not an executable file" >&2; exit 2; }
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
fi
for tool in systemd-analyze systemd-sysusers; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool not found (apt-get install systemd)" >&2; exit 2; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# verify resolves ExecStart: point it at the binary given, else keep
# /usr/bin/posthorn when installed, else /bin/true (then only the unit's
# syntax and settings are checked, not the binary).
unit=$tmp/posthorn.service
exe=/usr/bin/posthorn
if [ -n "$bin" ]; then exe=$bin
elif [ ! -x /usr/bin/posthorn ]; then exe=/bin/true
  echo "note: /usr/bin/posthorn is absent and no binary was given: ExecStart checked with /bin/true"
fi
sed "s#^ExecStart=/usr/bin/posthorn #ExecStart=$exe #" "$here/posthorn.service" >"$unit"
grep -q "^ExecStart=$exe " "$unit" || { echo "check.sh: no 'ExecStart=/usr/bin/posthorn ' line in posthorn.service" >&2; exit 1; }

if out=$(systemd-analyze verify --man=no --recursive-errors=no "$unit" 2>&1) && [ -z "$out" ]; then
  echo "ok: systemd-analyze verify posthorn.service"
else
  echo "FAIL: systemd-analyze verify posthorn.service:"; echo "$out"; fail=1
fi

if systemd-analyze security --offline=yes --threshold="$MAX_EXPOSURE" "$unit" >"$tmp/security.txt" 2>&1; then
  echo "ok: $(grep -o 'Overall exposure level.*' "$tmp/security.txt")"
else
  echo "FAIL: systemd-analyze security (threshold $MAX_EXPOSURE):"; cat "$tmp/security.txt"; fail=1
fi

if out=$(systemd-sysusers --dry-run --root="$tmp/sysroot" - <"$here/posthorn.sysusers" 2>&1); then
  echo "ok: systemd-sysusers posthorn.sysusers"
else
  echo "FAIL: systemd-sysusers posthorn.sysusers:"; echo "$out"; fail=1
fi

# Every key of posthorn.toml must be one the example documents (commented-out
# keys such as hostname and [tls] cert count).
if python3 -c 'import tomllib' 2>/dev/null; then
  if python3 - "$here/posthorn.toml" "$root/posthorn.example.toml" <<'PY'
import re, sys, tomllib
known, section = set(), ""
for line in open(sys.argv[2], encoding="utf-8"):
    line = line.strip()
    m = re.match(r"^#?\s*\[+([a-z_.]+)\]+\s*$", line)
    if m:
        section = m.group(1) + "."
        continue
    m = re.match(r"^#?\s*([a-z_]+)\s*=", line)
    if m:
        known.add(section + m.group(1))
def keys(table, prefix=""):
    for k, v in table.items():
        yield from keys(v, prefix + k + ".") if isinstance(v, dict) else [prefix + k]
with open(sys.argv[1], "rb") as f:
    unknown = [k for k in keys(tomllib.load(f)) if k not in known]
if unknown:
    print("FAIL: posthorn.toml keys not in posthorn.example.toml:", ", ".join(unknown))
    sys.exit(1)
PY
  then echo "ok: posthorn.toml keys are all in posthorn.example.toml"
  else fail=1
  fi
else
  echo "note: no python3 with tomllib: posthorn.toml keys not compared"
fi

# The binary itself loads the file (unknown keys and bad values are errors);
# the store it opens is a scratch one, the certificate paths are not read.
if [ -n "$bin" ]; then
  if out=$("$bin" --config "$here/posthorn.toml" --data-dir "$tmp/data" account list 2>&1); then
    echo "ok: $bin loads posthorn.toml"
  else
    echo "FAIL: $bin --config posthorn.toml:"; echo "$out"; fail=1
  fi
fi

exit "$fail"
