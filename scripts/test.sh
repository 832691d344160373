#!/usr/bin/env bash
# Quick-start command 2: set up .venv (with test extras) and run the whole test suite.
# Real-data tests read REGLAB_DATA_DIR (a folder holding mnist/ and fashion-mnist/);
# without it they are skipped with a reason.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" test
cd "$root"
# One test worker per physical core (pytest-xdist; tests/conftest.py gives each its share of the
# cores as REGLAB_THREADS); REGLAB_TEST_WORKERS=N sets the count (0: one process, no workers), an
# explicit -n / -p no:xdist among the arguments wins, and -s (show the tests' prints) runs one process,
# since the workers' output would not reach the terminal.
workers=(-n "${REGLAB_TEST_WORKERS:-auto}" --dist loadgroup)
for a in "$@"; do
    case "$a" in -n|-n[0-9]*|--numprocesses*|no:xdist|-s|--capture=no) workers=() ;; esac
done
exec "$root/.venv/bin/python" -m pytest "${workers[@]}" "$@"
