#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, idempotently:
#   - system packages (only with --system: chromium for the browser tests, redis-server),
#   - the virtual environment at .venv with the Python dependencies,
#   - the npm packages of web/ (the official socket.io-client bundle) and of tests/interop/,
#   - pyserver/_static (scripts/pack_static.py: the client bundles and the demo's pages that the
#     package carries), then the Rust extension pyserver._frames, built by maturin into .venv
#     (release profile).
# Usage: scripts/bootstrap.sh [--system] [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

want_system=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --system) want_system=1 ;;
    --bench) want_bench=1 ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[bootstrap] %s\n' "$*"; }

need_cmd() { command -v "$1" >/dev/null 2>&1 || { echo "bootstrap: $1 is required ($2)" >&2; exit 1; }; }
need_cmd python3 "Python 3.11 or newer"
need_cmd cargo "Rust, from rustup"
need_cmd node "Node.js 18 or newer"
need_cmd npm "npm"

if [ "$want_system" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  # A second CPython (3.12+) for the abi3 wheel's test (tests/test_packaging_wheel.py):
  # Debian's when it has one (bookworm has not: then pyenv's, if the machine has it).
  if ! scripts/second_python.sh >/dev/null 2>&1; then
    for version in 3.13 3.12; do
      if apt-cache policy "python$version" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        missing+=("python$version" "python$version-venv")
        break
      fi
    done
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    log "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
py=.venv/bin/python
stamp=.venv/.deps-stamp
deps_key=$(cat pyproject.toml | sha256sum | cut -c1-16)-$want_bench
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deps_key" ]; then
  log "installing Python dependencies"
  $py -m pip install -q --upgrade pip
  # The dependency lists live in pyproject.toml; read them from there so they are kept once.
  extras="dev"
  [ "$want_bench" = 1 ] && extras="dev,bench"
  $py - "$extras" <<'PY' > .venv/.requirements.txt
import sys, tomllib
meta = tomllib.load(open("pyproject.toml", "rb"))
project = meta["project"]
extras = project["optional-dependencies"]
def expand(names):  # "pyserver[redis,demo]" inside an extra names our own extras
    out = []
    for name in names:
        for req in extras[name]:
            if req.startswith("pyserver["):
                out += expand(req[len("pyserver["):-1].split(","))
            else:
                out.append(req)
    return out
reqs = list(project["dependencies"]) + expand(sys.argv[1].split(","))
print("\n".join(dict.fromkeys(reqs)))
PY
  $py -m pip install -q -r .venv/.requirements.txt
  echo "$deps_key" > "$stamp"
fi

for dir in web tests/interop tests/cluster/node; do
  if [ -f "$dir/package.json" ]; then
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      log "npm install in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
done
if [ "$want_bench" = 1 ] && [ -f bench/package.json ]; then
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
fi

# The client bundles and the demo's pages go into the package (pyserver/_static, from the npm
# packages above): the Rust build (rust_frames/build.rs) refuses to build without them.
$py scripts/pack_static.py
log "building the Rust extension (maturin develop --release)"
(. .venv/bin/activate && maturin develop --release --quiet)
log "ready ($root)"
