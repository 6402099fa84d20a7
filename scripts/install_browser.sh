#!/usr/bin/env bash
# Install Debian's Chromium for the audit page's browser tests (tests/test_audit*.py drive it headless with
# Playwright). Without it those tests skip with a reason; everything else runs.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO="sudo"
fi
echo "installing Debian's chromium (for the audit page tests)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
