#!/usr/bin/env bash
# Quick-start command 1: set up .venv and run the default study (or any reglab command).
#   bash scripts/run.sh                 -> reglab run   (the default study)
#   bash scripts/run.sh data info mnist -> reglab data info mnist
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
if [ "$#" -eq 0 ]; then set -- run; fi
exec "$root/.venv/bin/reglab" "$@"
