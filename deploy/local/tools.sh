#!/usr/bin/env bash
# Command-line tools the tests need beyond the Python environment, from Debian's packages
# or the npm registry.
#
#   tools.sh NAME...   install each named tool that is not on PATH yet; a tool already there
#                      costs one `command -v` (no apt-get at all)
#
#   promtool           Prometheus' rule checker and rule unit-test runner (Debian: prometheus),
#                      for tests/ops on deploy/observability/
#   asyncapi           @asyncapi/parser from the npm registry, as pinned by
#                      deploy/asyncapi/package-lock.json, for tests/ops/test_asyncapi.py;
#                      `npm ci` runs only when node_modules is missing or the lock changed
#   chromium           Debian's chromium and chromium-driver (/usr/bin/chromium,
#                      /usr/bin/chromedriver), for tests/console in headless Chromium
#
# Idempotent and quiet: prints only what it installs, on stderr. `apt-get update` runs only when
# the package lists do not know a package yet (a new machine) or an install from them fails.
set -euo pipefail

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

# apt and dpkg talk a lot even with -qq: their output is shown only when they fail
quietly() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}
apt_get() { quietly env DEBIAN_FRONTEND=noninteractive apt-get -y -qq "$@"; }

APT_UPDATED=
apt_update() {
  [ -n "$APT_UPDATED" ] && return 0
  apt_get update
  APT_UPDATED=1
}

known_to_apt() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'; }

# Packages with a daemon (prometheus) would start it from their postinst: a test tool must not
# leave a server running. A policy-rc.d that refuses every start is what Debian provides for
# that; one is put in place only for this install, and only when the machine has none.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=
trap '[ -z "$OWN_POLICY" ] || rm -f "$POLICY"' EXIT

apt_install() {
  [ "$(id -u)" = 0 ] || die "needs root to install Debian's $*: run it as root or install them"
  if [ ! -e "$POLICY" ]; then
    OWN_POLICY=1
    printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod +x "$POLICY"
  fi
  local pkg
  for pkg in "$@"; do known_to_apt "$pkg" || apt_update; done
  # lists older than the mirror fail with 404s: once more after an update
  apt_get install --no-install-recommends "$@" || {
    [ -z "$APT_UPDATED" ] || return 1
    apt_update
    apt_get install --no-install-recommends "$@"
  }
}

tool_promtool() {
  command -v promtool >/dev/null && return 0
  log "installing Debian's prometheus package (for promtool)"
  apt_install prometheus
  command -v promtool >/dev/null || die "prometheus installed but promtool is not on PATH"
}

# Debian's own build and its matching driver: a test tool's download of a browser of its own
# cannot work here (no host but the package registries is reached).
tool_chromium() {
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && return 0
  log "installing Debian's chromium and chromium-driver (for tests/console)"
  apt_install chromium chromium-driver
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    || die "chromium installed but /usr/bin/chromium or /usr/bin/chromedriver is missing"
}

# `npm ci` installs exactly the lock (wiping node_modules first); the stamp names the lock it
# installed, so a changed lock installs again and an unchanged one costs a cksum. deploy/asyncapi/
# .npmrc turns install scripts off.
tool_asyncapi() {
  local dir stamp
  dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../asyncapi" && pwd)
  command -v npm >/dev/null || die "asyncapi needs Node.js 20 or later with npm on PATH"
  stamp="$dir/node_modules/.installed-$(cksum <"$dir/package-lock.json" | cut -d' ' -f1)"
  [ -e "$stamp" ] && return 0
  log "installing @asyncapi/parser from the npm registry (deploy/asyncapi/package-lock.json)"
  (cd "$dir" && quietly npm ci)
  touch "$stamp"
}

[ "$#" -gt 0 ] || die "usage: tools.sh NAME... (known: promtool asyncapi chromium)"
for name in "$@"; do
  case "$name" in
    promtool) tool_promtool ;;
    asyncapi) tool_asyncapi ;;
    chromium) tool_chromium ;;
    *) die "unknown tool '$name' (known: promtool asyncapi chromium)" ;;
  esac
done
