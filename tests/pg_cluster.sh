#!/bin/sh
# pg_cluster.sh start DIR | stop DIR - a throw-away PostgreSQL cluster for the
# tests: initdb into DIR/data (as the `postgres` user when run as root, which
# PostgreSQL requires; CI runs as root), listening only on a unix socket in
# DIR, trust authentication, fsync off. `start` prints the libpq connection
# string of its maintenance database's server ("host=DIR port=P user=postgres");
# the tests add "dbname=NAME" for the databases they create. Exits non-zero
# with the reason on stderr when the cluster cannot start: the suite then
# fails, it does not skip. As root, DIR's parent must be one the postgres
# user may enter (mktemp -d under /tmp, not inside another mktemp -d).
set -u
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
port=5432

bindir() {
    for d in "${PG_BINDIR:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
    return 1
}

# as_pg CMD...: run as the cluster's owner (postgres when we are root)
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@" </dev/null
    else
        "$@" </dev/null
    fi
}

case "$cmd" in
start)
    bin=$(bindir) || { echo "pg_cluster: no initdb/pg_ctl (install Debian's postgresql)" >&2; exit 1; }
    mkdir -p "$dir" || exit 1
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || { echo "pg_cluster: no postgres user" >&2; exit 1; }
        chown postgres "$dir" && chmod 755 "$dir" || exit 1
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; echo "pg_cluster: initdb failed" >&2; exit 1; }
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -h '' -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >"$dir/pg_ctl.log" 2>&1 || {
        cat "$dir/pg_ctl.log" "$dir/server.log" >&2 2>/dev/null
        echo "pg_cluster: pg_ctl start failed" >&2
        exit 1
    }
    echo "host=$dir port=$port user=postgres"
    ;;
stop)
    bin=$(bindir) || exit 0
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
