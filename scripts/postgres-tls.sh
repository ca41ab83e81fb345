#!/usr/bin/env bash
# Gives the test PostgreSQL server on 127.0.0.1:5432 a certificate from a lab CA, for the
# `sslmode=verify-full` test (tests/postgres_tls.rs). The CA is written to
# $HOTLINE_TEST_PG_CA (default /var/lib/postgresql/hotline-tls/ca.pem). Idempotent: a
# certificate already in place and still valid for a week is kept.
set -euo pipefail
dir=/var/lib/postgresql/hotline-tls
ca="${HOTLINE_TEST_PG_CA:-$dir/ca.pem}"
psql_() { psql -h 127.0.0.1 -U postgres -d postgres -tAq "$@"; }

current=$(psql_ -c "SHOW ssl_cert_file")
if [ "$current" = "$dir/server.pem" ] && [ -f "$ca" ] &&
  openssl x509 -checkend 604800 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
  exit 0
fi

mkdir -p "$dir" "$(dirname "$ca")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Hotline test CA" \
  -keyout "$work/ca.key" -out "$work/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 825 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null
install -m 0644 "$work/ca.pem" "$ca"
install -m 0644 "$work/server.pem" "$dir/server.pem"
install -m 0600 "$work/server.key" "$dir/server.key"
chown -R postgres:postgres "$dir" 2>/dev/null || true
psql_ -c "ALTER SYSTEM SET ssl = on" \
  -c "ALTER SYSTEM SET ssl_cert_file = '$dir/server.pem'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$dir/server.key'" \
  -c "SELECT pg_reload_conf()" >/dev/null
echo "postgres-tls: the test server's certificate is from the CA in $ca"
