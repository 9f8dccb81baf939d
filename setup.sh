#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine, run as root:
#   ./setup.sh run    install the platform and serve the demo contact center on 127.0.0.1
#   ./setup.sh test   install everything the tests need and run the whole suite
# Every package the platform or its tests use is installed here, so a clean
# machine (and CI) fails loudly when a step is missing instead of relying on
# whatever happened to be installed by hand.
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-}
case "$mode" in
  run|test|install) ;;
  *) echo "usage: $0 run|test|install [args passed to ccserver run / pytest]" >&2; exit 2 ;;
esac
shift || true

APT_RUN=(python3 python3-venv python3-dev espeak-ng libespeak-ng1)
# sip-tester: SIPp callers and agents; baresip-core: a real softphone; tshark:
# dumpcap observes RTP on loopback; sox: test audio; redis-server and
# postgresql: the shared-state and SQL backends tested against real servers;
# chromium + chromium-driver: the web console in a real headless browser
# (Playwright drives /usr/bin/chromium, it downloads no browser of its own);
# fonts-noto-cjk: the console's Chinese labels; rtpengine-daemon: a C media
# relay the relay benchmark compares against.
APT_TEST=(sip-tester baresip-core tshark sox redis-server postgresql chromium chromium-driver fonts-noto-cjk rtpengine-daemon)

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

PY=${PYTHON:-python3}
venv() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
}

case "$mode" in
  run|install)
    apt_install "${APT_RUN[@]}"
    venv
    .venv/bin/python -m pip install -q -e .
    [ "$mode" = install ] && exit 0
    exec .venv/bin/ccserver run "$@"
    ;;
  test)
    apt_install "${APT_RUN[@]}" "${APT_TEST[@]}"
    venv
    .venv/bin/python -m pip install -q -e '.[test]'
    .venv/bin/ruff check ccserver acd ivr cti agent_console tests bench
    .venv/bin/mypy
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
    ;;
esac
