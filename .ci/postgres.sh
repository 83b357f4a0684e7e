#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 cluster on 127.0.0.1 for the tests, from Debian's
# binaries (installed here when missing). Prints the SQLAlchemy URL on stdout.
# Usage: .ci/postgres.sh start DIR PORT | .ci/postgres.sh stop DIR
set -euo pipefail
action=$1 dir=$2 port=${3:-55432}

find_bin() {
  for candidate in "$(command -v "$1" 2>/dev/null || true)" /usr/lib/postgresql/*/bin/"$1"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

as_db_user() {  # initdb and postgres refuse to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$action" = stop ]; then
  as_db_user "$(find_bin pg_ctl)" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  exit 0
fi

if ! find_bin initdb >/dev/null; then
  echo "installing PostgreSQL from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql postgres
fi
initdb=$(find_bin initdb) pg_ctl=$(find_bin pg_ctl)
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
as_db_user "$initdb" -D "$dir/data" -U autocompress --auth=trust >/dev/null
as_db_user "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >/dev/null
as_db_user "$(find_bin createdb)" -h 127.0.0.1 -p "$port" -U autocompress autocompress_test
echo "postgresql+psycopg://autocompress@127.0.0.1:$port/autocompress_test"
