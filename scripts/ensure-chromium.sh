#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright.
# Installs it when it is missing: non-interactive and quiet, as root (CI) or through sudo.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "ensure-chromium: $CHROMIUM is missing and there is no apt-get: install Chromium" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
echo "ensure-chromium: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
test -x "$CHROMIUM"
