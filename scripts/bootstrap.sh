#!/usr/bin/env bash
# Create .venv with Python >= 3.12 (current JAX needs it) and install the project. Idempotent:
# re-running only reinstalls when requirements.txt or setup.cfg changed.
set -euo pipefail
cd "$(dirname "$0")/.."

usable() {  # runs, and is Python >= 3.12 (pyenv shims exist for versions that are not active)
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
  # 3.12 first: the pinned stack is tested on it.
  for candidate in "${PYTHON:-}" python3.12 python3.13 python3; do
    if [ -n "$candidate" ] && usable "$candidate"; then echo "$candidate"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9](\.|$)' | sort -V); do
      candidate="$(pyenv root)/versions/$v/bin/python3"
      if usable "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  echo "bootstrap: no Python >= 3.12 found (install one, or set PYTHON=/path/to/python3.12)" >&2
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
