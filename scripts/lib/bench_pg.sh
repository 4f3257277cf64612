# The bench's host and Postgres (scripts/bench, scripts/bench-ab): sourced after scripts/lib/pg.sh.
# bench_host_tune sets the host's writeback (restore_host puts it back); bench_pg_start starts the
# bench's cluster (.pg/bench) with a server's settings. Both are explained in docs/performance.md.

# Postgres 15 extends a table or index by writing zeroed pages, which reach the disk only when
# the kernel writes them back: with its defaults (from 10% of memory dirty, or after 30 s), a
# flood's ~400 MB of new pages all go in one burst about 30 s in, and every commit's WAL flush
# waits ~200 ms behind it. A database server is set to write back early and steadily; so is the
# host for this run, when run as root (BENCH_DIRTY_BACKGROUND_BYTES, default 64 MiB; "keep"
# leaves the host as it is). restore_host gives the host's values back.
dirty_restore=()
bench_host_tune() {
	local dirty_bytes="${BENCH_DIRTY_BACKGROUND_BYTES:-67108864}" old_bytes old_ratio
	if [[ $dirty_bytes != keep && $EUID == 0 && -w /proc/sys/vm/dirty_background_bytes ]]; then
		old_bytes="$(</proc/sys/vm/dirty_background_bytes)"
		old_ratio="$(</proc/sys/vm/dirty_background_ratio)"
		if [[ $old_bytes != 0 ]]; then
			dirty_restore=(dirty_background_bytes "$old_bytes")
		else
			dirty_restore=(dirty_background_ratio "$old_ratio")
		fi
		echo "$dirty_bytes" >/proc/sys/vm/dirty_background_bytes
	fi
}
restore_host() {
	if ((${#dirty_restore[@]})); then echo "${dirty_restore[1]}" >"/proc/sys/vm/${dirty_restore[0]}" || true; fi
}

# Postgres is set up as a server of its own would be, not with the defaults meant for a laptop
# (docs/performance.md); pgbench runs on the same settings, so the ratio stays fair.
# BENCH_SHARED_BUFFERS (default 2GB; Postgres's own default is 128MB) sizes the buffer cache: a
# flood's working set outgrows 128 MB within a minute, and then backends write out dirty pages
# themselves. BENCH_MAX_WAL (default 4GB; Postgres's is 1GB): with 1 GB a flood fills the WAL in
# under a minute, and every checkpoint makes each page's next change write a full page image.
# synchronous_commit stays on. Autovacuum runs are logged (.pg/bench/postgres.log), to line them
# up with latency spikes. Sets PG_STARTED_BY_US as pg_ensure does.
bench_pg_start() {
	pg_ensure bench postgres
	local started="$PG_STARTED_BY_US"
	_pg_psql -d postgres -c "alter system set max_wal_size = '${BENCH_MAX_WAL:-4GB}'" \
		-c "alter system set shared_buffers = '${BENCH_SHARED_BUFFERS:-2GB}'" \
		-c "alter system set log_autovacuum_min_duration = 0" -c "select pg_reload_conf()" >/dev/null
	if [[ "$(_pg_psql -d postgres -Atc "select setting::bigint * 8192 = pg_size_bytes('${BENCH_SHARED_BUFFERS:-2GB}') from pg_settings where name = 'shared_buffers'")" != t ]]; then
		# shared_buffers takes a restart.
		pg_stop bench >/dev/null
		pg_ensure bench postgres
	fi
	PG_STARTED_BY_US="$started"
}
