#!/usr/bin/env bash
# The project's test command (README "Test it"; `.ci/run` calls exactly this). Installs
# what a fresh machine lacks, makes sure the PostgreSQL server the tests use runs on
# 127.0.0.1:5432 (trust auth, database `test`), then runs every test binary, even after
# one fails, and ends with a summary of the binaries and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test

if [ -z "${HOTLINE_TEST_POSTGRES:-}" ]; then
  pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
  if ! pg_up; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    # A server this script installed trusts loopback, as the machines here do.
    grep -q '^host all all 127.0.0.1/32 trust' "$hba" ||
      sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" |
    grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
  # The migrations' trigram index needs pg_trgm (PostgreSQL's contrib, in Debian's package).
  psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public"
  # TLS to PostgreSQL (issue 20): the server gets a lab CA's certificate for 127.0.0.1 and
  # localhost, so that `sslmode=verify-full` can be tested against it. Clients that do not
  # ask for TLS are unaffected.
  bash scripts/postgres-tls.sh
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Built first, so that the summary can say how long the tests themselves took.
t0=$(date +%s)
cargo test --release --no-fail-fast --no-run "$@" 2>&1 | tee "$log" || status=$?
t1=$(date +%s)
cargo test --release --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=$?
t2=$(date +%s)

# The summary: one line per binary that failed, then the totals.
awk '
  /^ *Running / { bin = $2; bins++ }
  /^ *Doc-tests / { bin = "doc-tests " $2; bins++ }
  /^test result: / {
    for (i = 1; i <= NF; i++) if ($(i) == "in") { t = $(i + 1); sub(/s$/, "", t); serial += t }
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/) passed += $(i - 1)
      if ($(i) ~ /^failed;?$/) { f = $(i - 1); failed += f }
    }
    if ($3 == "FAILED.") { bad++; badlist = badlist "  failed: " bin "\n" } else good++
  }
  END {
    printf "\n== summary ==\n%s", badlist
    printf "test binaries: %d run, %d passed, %d failed (%d did not finish)\n", bins, good, bad, bins - good - bad
    printf "%d passed, %d failed\n", passed, failed
    printf "wall time: build %d s, tests %d s (binaries one after another; %.0f s inside them)\n", build, tests, serial
  }' build=$((t1 - t0)) tests=$((t2 - t1)) "$log"
exit "$status"
