#!/usr/bin/env bash
# Quick-start command 2: set up .venv (with test extras) and run the whole test suite.
# Real-data tests read REGLAB_DATA_DIR (a folder holding mnist/ and fashion-mnist/);
# without it they are skipped with a reason.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" test
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
