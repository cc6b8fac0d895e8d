#!/usr/bin/env bash
# Make sure redis-server is installed (Debian's package). The project starts its own Redis
# on loopback; the package's system service is kept from starting during the install.
set -eu
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "error: redis-server is missing. Install it (sudo apt-get install -y redis-server) and run make again." >&2
  exit 1
fi
echo "Installing redis-server from Debian's packages..."
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
apt-get install -y -qq --no-install-recommends redis-server >/dev/null
redis-server --version
