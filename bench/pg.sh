# Sourced by the bench scripts: a throwaway PostgreSQL cluster in a temporary directory.
# `start_pg` sets PG_BASE (postgres://postgres@127.0.0.1:PORT, no database); `stop_pg` removes it.
# `start_pg` passes PG_OPTS, when set, to the server (e.g. `-c shared_preload_libraries=...`).
# `bench_pg_url` sets pg_url: TICKLER_BENCH_POSTGRES_URL, or such a cluster's `postgres` database,
# stopped when the script exits.
start_pg() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    pg_dir=$(mktemp -d /tmp/tickler-bench-pg.XXXXXX)
    as_pg=()
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pg_dir"; as_pg=(runuser -u postgres --); fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres -D "$pg_dir/data" >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" start -w -D "$pg_dir/data" -l "$pg_dir/log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $pg_dir -c max_connections=200 ${PG_OPTS:-}" >/dev/null
    PG_BASE="postgres://postgres@127.0.0.1:$port"
}

stop_pg() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" stop -m fast -D "$pg_dir/data" >/dev/null
    rm -rf "$pg_dir"
}

bench_pg_url() {
    pg_url="${TICKLER_BENCH_POSTGRES_URL:-}"
    if [ -z "$pg_url" ]; then
        start_pg
        trap stop_pg EXIT
        pg_url="$PG_BASE/postgres"
    fi
}
