#!/usr/bin/env bash
# Installs what pgshift needs to build, test, benchmark and run its demo,
# from Debian 12's packages. Does nothing when everything is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config openssl file
  libboost-dev libabsl-dev libtomlplusplus-dev libpg-query-dev libprotobuf-c-dev libssl-dev libpq-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 postgresql-client-15 pgbouncer
  default-jdk-headless libpostgresql-jdbc-java
  clang-14 libfuzzer-14-dev
  chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
# The postgresql package must not start a system cluster of its own.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
