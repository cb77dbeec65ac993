#!/usr/bin/env bash
# The README's test command: install everything (venv, requirements, Debian Chromium for the
# browser tests, PostgreSQL server binaries) and run the whole test suite (unit + app + browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The optional Ray extra (tests/test_ray.py runs the Ray path on a local two-node cluster);
# the dashboard command does not install it.
if ! .venv/bin/python -c "import ray.data" 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check --no-compile -r requirements-ray.txt
fi
# Debian packages the tests need: Chromium (browser tests), the PostgreSQL server binaries
# (tests/test_review_pg.py starts a throwaway server from them; none is started here).
APT=()
[ -x /usr/bin/chromium ] || APT+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || APT+=(postgresql)
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
