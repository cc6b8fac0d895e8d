#!/usr/bin/env bash
# Make sure a Debian package is installed: ensure_debian_package.sh <package> <file it installs>.
# Used for what only the tests need (libfaketime for the clock-skew drills); redis-server has
# its own script (ensure_redis.sh) because its service must be kept from starting.
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
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$package" >/dev/null
test -e "$proof"
