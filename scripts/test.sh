#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine (Python packages, Debian's chromium for the browser
# tests), then run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet -r requirements-dev.txt
# the peer libraries the oracle tests compare against (curvlinops) declare unpinned torch: --no-deps keeps the CPU wheel
python -m pip install --quiet --no-deps -r benchmarks/requirements.txt
if [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends chromium
fi
exec python -m pytest "$@"
