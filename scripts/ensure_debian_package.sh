#!/usr/bin/env bash
# Make sure a Debian package is installed: ensure_debian_package.sh <package> <file it installs>.
# Used for what only the tests need (libfaketime for the clock-skew drills, promtool from
# `prometheus` for the alert rules); a package's system service, if it has one, is kept from
# starting during the install (Prometheus' would listen on :9090). redis-server has its own
# script (ensure_redis.sh).
set -eu
package="$1"
proof="$2"
if [ -e "$proof" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "error: $proof is missing. Install it (sudo apt-get install -y $package) and run make again." >&2
  exit 1
fi
echo "Installing $package from Debian's packages..."
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$package" >/dev/null
test -e "$proof"
