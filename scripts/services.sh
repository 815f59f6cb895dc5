#!/usr/bin/env bash
# Local PostgreSQL (with pgvector) and Redis for the scale-out backends, on loopback ports.
#
#   bash scripts/services.sh install      # Debian packages (PostgreSQL, Redis, nginx), and
#                                         # pgvector built from source (root)
#   bash scripts/services.sh start [DIR]  # start both (data in DIR, default .services/);
#                                         # prints FAC_DATABASE_URL=… and FAC_REDIS_URL=…
#   bash scripts/services.sh stop [DIR]   # stop what `start` started there
#
# Ports: PG_PORT (default 54329) and REDIS_PORT (default 63799). `start` installs first when
# something is missing. Nothing listens beyond 127.0.0.1; the database trusts local users, so
# this is for trying Facilitair out and for its tests, not for production.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_VERSION=${PG_VERSION:-15}
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_PORT=${PG_PORT:-54329}
REDIS_PORT=${REDIS_PORT:-63799}

say() { echo "services: $*" >&2; }

have_packages() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_config" ] && command -v redis-server >/dev/null \
        && [ -x /usr/sbin/nginx ]
}

have_pgvector() {
    [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector.control" ]
}

install_packages() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "please install postgresql-$PG_VERSION, postgresql-server-dev-$PG_VERSION, redis-server and nginx"
        exit 1
    fi
    say "installing PostgreSQL $PG_VERSION, Redis and nginx from Debian packages…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "postgresql-$PG_VERSION" "postgresql-server-dev-$PG_VERSION" \
        redis-server nginx make gcc >/dev/null
}

# Debian 12 has no pgvector package, but a newer Debian release has its source package: fetch
# that with apt (from the mirror this machine already uses, with private state folders so the
# system's own package lists stay as they are) and build it against this PostgreSQL.
install_pgvector() {
    if [ "$(id -u)" != 0 ]; then
        say "pgvector is missing: install it (see https://github.com/pgvector/pgvector#installation)"
        exit 1
    fi
    say "building pgvector from Debian's source package…"
    local work uris
    work=$(mktemp -d)
    mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
    uris=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    if [ -z "$uris" ]; then
        uris=$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list)
    fi
    cat >"$work/parts/pgvector-src.sources" <<EOF
Types: deb-src
URIs: $uris
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    local apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/parts"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
    apt-get -qq "${apt_private[@]}" update
    (cd "$work/src" && apt-get -qq "${apt_private[@]}" source --download-only pgvector >/dev/null)
    tar -xf "$work"/src/pgvector_*.orig.tar.* -C "$work/src"
    make -s -C "$work"/src/pgvector-*/ PG_CONFIG="$PG_BIN/pg_config" >/dev/null
    make -s -C "$work"/src/pgvector-*/ PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
    rm -rf "$work"
}

install() {
    have_packages || install_packages
    have_pgvector || install_pgvector
}

# Until `cmd` succeeds, for up to 10 s.
wait_for() {
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

start() {
    local dir
    dir=$(realpath -m "${1:-.services}")
    install
    mkdir -p "$dir"
    local pgdata=$dir/postgres sockets=$dir/sockets as_pg=()
    # initdb and postgres refuse to run as root: run them as the postgres user.
    if [ "$(id -u)" = 0 ]; then
        as_pg=(runuser -u postgres --)
        mkdir -p "$pgdata" "$sockets"
        touch "$dir/postgres.log"
        chown postgres "$pgdata" "$sockets" "$dir/postgres.log"
    fi
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        "${as_pg[@]}" "$PG_BIN/initdb" -D "$pgdata" -U postgres -A trust --no-sync >/dev/null
    fi
    if ! "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pgdata" -w -l "$dir/postgres.log" start -o \
            "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $sockets -c fsync=off -c max_connections=400" \
            >/dev/null
    fi
    wait_for "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
    local url="postgresql://postgres@127.0.0.1:$PG_PORT/facilitair"
    if ! "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'facilitair'" | grep -q 1; then
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres facilitair
    fi

    if [ ! -f "$dir/redis.pid" ] || ! kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
    fi
    wait_for redis-cli -p "$REDIS_PORT" ping
    echo "FAC_DATABASE_URL=$url"
    echo "FAC_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

stop() {
    local dir
    dir=$(realpath -m "${1:-.services}")
    local as_pg=()
    [ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
    if [ -f "$dir/postgres/postmaster.pid" ]; then
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$dir/postgres" -m fast -w stop >/dev/null || true
    fi
    if [ -f "$dir/redis.pid" ]; then
        local pid
        pid=$(cat "$dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        # A stopped child can linger as a zombie: treat state Z as ended.
        for _ in $(seq 50); do
            local state
            state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
            [ -z "$state" ] || [[ $state == Z* ]] && break
            sleep 0.1
        done
        rm -f "$dir/redis.pid"
    fi
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*)
    echo "usage: bash scripts/services.sh install | start [DIR] | stop [DIR]" >&2
    exit 2
    ;;
esac
