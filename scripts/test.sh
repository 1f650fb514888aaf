#!/usr/bin/env bash
# Runs every check and test Convene has: formatting, lints, unit and integration tests against
# real Postgres and Redis, then the browser client's checks and the demo page in Chromium and
# Firefox. Where Postgres, Redis, Node.js, Chromium or Firefox is missing or stopped, it installs
# (apt-get, as root) and starts them first. Each test creates its own fresh database.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/convene-target}"
PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
export CONVENE_TEST_POSTGRES="${CONVENE_TEST_POSTGRES:-postgres://postgres@$PGHOST_ADDR:$PGPORT_NUM/postgres}"
export CONVENE_TEST_REDIS="${CONVENE_TEST_REDIS:-redis://127.0.0.1:6379}"

log() { printf '==> %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for_port() {
  for _ in $(seq 1 60); do
    port_open "$1" "$2" && return 0
    sleep 0.5
  done
  echo "nothing is listening on $1:$2" >&2
  return 1
}

ensure_postgres() {
  if port_open "$PGHOST_ADDR" "$PGPORT_NUM"; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect over loopback as postgres without a password.
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port "$PGHOST_ADDR" "$PGPORT_NUM"
}

ensure_redis() {
  if port_open 127.0.0.1 6379; then return; fi
  if ! command -v redis-server >/dev/null; then
    log "installing Redis"
    apt_install redis-server
  fi
  log "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for_port 127.0.0.1 6379
}

ensure_browser_tools() {
  local missing=()
  command -v npm >/dev/null || missing+=(nodejs npm)
  # Debian's Chromium and Firefox ESR: the browser tests never download a browser.
  [ -x "${CONVENE_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
  [ -x "${CONVENE_FIREFOX:-/usr/bin/firefox-esr}" ] || missing+=(firefox-esr)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# Each test drops its database when it ends; a run that was killed leaves its databases behind,
# and this removes them.
drop_old_test_databases() {
  command -v psql >/dev/null || return 0
  local names
  names="$(psql "$CONVENE_TEST_POSTGRES" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'convene_test_%'" 2>/dev/null || true)"
  for name in $names; do
    psql "$CONVENE_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1 || true
  done
}

ensure_postgres
ensure_redis
ensure_browser_tools
drop_old_test_databases

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked

# The browser client: its tools pinned by the lock file, its types checked, the demo page the
# binary embeds rebuilt and compared with the committed one, then the page driven in Chromium
# and Firefox against the binary cargo test built. Screenshots and the server's log land in
# clients/js/test-results.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
log "browser client: npm ci, typecheck, assets up to date"
(
  cd clients/js
  npm ci --no-audit --no-fund
  npm run typecheck
  npm run check-build
)
log "browser tests (Chromium, Firefox)"
# `cargo test` built the binary for the integration tests: the browser tests run that one.
(
  cd clients/js
  CONVENE_BIN="$CARGO_TARGET_DIR/debug/convene" npx playwright test
)
