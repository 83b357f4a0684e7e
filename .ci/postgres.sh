#!/usr/bin/env bash
# Start a throwaway PostgreSQL 15 cluster on 127.0.0.1 for the tests, from Debian's
# binaries (installed here when missing). Prints the SQLAlchemy URL on stdout.
# Usage: .ci/postgres.sh start DIR PORT | stop DIR | restart DIR | halt DIR | resume DIR
# (restart: a fast stop and start, as an operator's `pg_ctl restart`; halt/resume: the
# server gone for a while, then back on the same port; the fault tests use these.)
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

case "$action" in
  stop|halt)
    as_db_user "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    exit 0 ;;
  restart)
    as_db_user "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w restart >/dev/null
    exit 0 ;;
  resume)
    as_db_user "$(find_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    exit 0 ;;
esac

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
# In the cluster's own configuration, so a restart or a later start keeps them.
printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
  "$port" "$dir" >> "$dir/data/postgresql.conf"
as_db_user "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
as_db_user "$(find_bin createdb)" -h 127.0.0.1 -p "$port" -U autocompress autocompress_test
echo "postgresql+psycopg://autocompress@127.0.0.1:$port/autocompress_test"
