#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing.
# Playwright's own browser download cannot work offline, so the tests drive
# /usr/bin/chromium. Only root can apt-get; others get a hint and the browser
# tests skip locally (in CI, with CI=true, they fail instead).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium is not installed and this is not root: run 'sudo apt-get install chromium'" \
         "to enable the browser tests." >&2
    exit 0
fi
echo "installing Debian's chromium for the browser tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version >&2
