#!/usr/bin/env bash
# Create .venv with Python >= 3.12 (current JAX needs it) and install the project. Idempotent:
# re-running only reinstalls when requirements.txt or setup.cfg changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -rV); do
      echo "$(pyenv root)/versions/$v/bin/python3"; return
    done
  fi
  if python3 -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo python3; return; fi
  echo "bootstrap: no Python >= 3.12 found (set PYTHON=/path/to/python3.12)" >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  py=$(find_python)
  echo "bootstrap: creating .venv with $($py --version)"
  "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  echo "bootstrap: installing requirements (CPU JAX)"
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  touch "$stamp"
fi
