#!/usr/bin/env bash
# Print the path of a CPython 3.12 or later with venv (the second interpreter the abi3 wheel is
# installed into by tests/test_packaging_wheel.py), or exit 1. Looks at $PYSERVER_SECOND_PYTHON,
# then Debian's python3.13/python3.12 (/usr/bin), then pyenv's versions.
set -uo pipefail
pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
candidates=("${PYSERVER_SECOND_PYTHON:-}" /usr/bin/python3.13 /usr/bin/python3.12)
for dir in "$pyenv_root"/versions/3.1[3-9]* "$pyenv_root"/versions/3.12*; do
  candidates+=("$dir/bin/python3")
done
for python in "${candidates[@]}"; do
  [ -n "$python" ] && [ -x "$python" ] || continue
  if "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12) or sys.implementation.name != "cpython")' 2>/dev/null; then
    echo "$python"
    exit 0
  fi
done
echo "no CPython 3.12+ with venv found (apt-get install python3.13-venv, or pyenv install 3.13)" >&2
exit 1
