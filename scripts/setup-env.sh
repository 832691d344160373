#!/usr/bin/env bash
# Creates .venv (when absent) and installs reglab into it with the exact versions of
# constraints.txt (torch 2.13.0, CPU), re-installing only when pyproject.toml or
# constraints.txt changed. Usage: scripts/setup-env.sh [extra]   (extra: test)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-}"
venv="$root/.venv"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "reglab: Python >= 3.11 is required; got $("$py" --version). Fix: set PYTHON=/path/to/python3.11" >&2; exit 2; }
    "$py" -m venv "$venv"
fi
spec="."
[ -n "$extra" ] && spec=".[$extra]"
stamp="$venv/.reglab-installed-$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16)-${extra:-base}"
if [ ! -f "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$venv/bin/python" -m pip install --quiet -c "$root/constraints.txt" -e "$root/$spec"
    touch "$stamp"
fi
