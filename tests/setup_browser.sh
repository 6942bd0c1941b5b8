#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the report browser test (tests/unit/test_report_browser.py).
# Idempotent: does nothing when /usr/bin/chromium is already there. Uses sudo only when not root.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser.sh: apt-get not found; install Chromium yourself (the browser test will skip)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# A failed install must not fail the test run: the browser test then skips and says why.
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }; then
    echo "setup_browser.sh: could not install chromium; the report browser test will skip" >&2
fi
