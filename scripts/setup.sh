#!/usr/bin/env bash
# What a fresh Debian machine with only Rust lacks, installed with apt-get (as root, or
# through sudo). `scripts/run.sh` needs the build tools; `scripts/test.sh` also needs the
# SIP peers the tests drive and a PostgreSQL server.
#   bash scripts/setup.sh build   cmake and a C++ compiler (whisper.cpp)
#   bash scripts/setup.sh test    the above, SIPp, baresip, PostgreSQL, Chromium with its
#                                 WebDriver (the console's browser tests), and Kamailio
#                                 (the cluster's test)
set -euo pipefail
what=${1:-build}

packages=()
command -v cmake >/dev/null 2>&1 || packages+=(cmake)
command -v c++ >/dev/null 2>&1 || packages+=(g++)
command -v make >/dev/null 2>&1 || packages+=(make)
if [ "$what" = test ]; then
  command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
  command -v baresip >/dev/null 2>&1 || packages+=(baresip)
  command -v pg_ctlcluster >/dev/null 2>&1 || packages+=(postgresql)
  # scripts/postgres-tls.sh makes the test server's certificate with it.
  command -v openssl >/dev/null 2>&1 || packages+=(openssl)
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
  # The cluster's SIP edge (tests/cluster.rs): Kamailio with its dispatcher module.
  command -v kamailio >/dev/null 2>&1 || packages+=(kamailio)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "installing: ${packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
