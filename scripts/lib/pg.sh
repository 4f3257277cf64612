#!/usr/bin/env bash
# shellcheck shell=bash
#
# Private, throw-away PostgreSQL clusters for development and tests.
#
# Source this file, then:
#   pg_ensure NAME [DB]  make sure cluster .pg/NAME runs, DB (default
#                        "crowdledger") exists and so do the service's roles;
#                        exports DATABASE_URL (the owner, for migrations),
#                        PG_SERVICE_URL (the service's least-privileged login,
#                        docs/database-roles.md) and PG_STARTED_BY_US (1 if
#                        this call started the server).
#   pg_stop NAME [MODE]  stop cluster .pg/NAME if it is running (pg_ctl's MODE,
#                        default fast; immediate is a crash).
#
# Layout of a cluster folder <repo>/.pg/NAME/ (git-ignored):
#   data/            PGDATA, owned by the server user, mode 0700
#   port             TCP port chosen once and reused by later runs
#   postgres.log     server log (pg_ctl -l), so the daemon never holds our stdio
#   .s.PGSQL.<port>  unix socket (never /var/run/postgresql)
# As root the server runs as the 'postgres' system user (initdb/postgres
# refuse root); if that user cannot reach <repo>/.pg, the folder lives in
# /var/tmp/crowdledger-pg-<hash>/NAME and .pg/NAME is a symlink to it.
#
# Functions return non-zero on failure instead of relying on the caller's
# `set -e`, because callers may invoke them from `if`/`||` contexts where
# errexit is suspended.

# Resolve the repository from this file's location, not from the cwd, so the
# scripts work no matter where they are started from.
_PG_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
_PG_ROOT="$_PG_REPO/.pg"
_PG_DB_USER=crowdledger
# The service's login: a member of the app role the migrations grant to, owner of nothing.
_PG_SERVICE_USER=crowdledger_service
_PG_APP_ROLE=crowdledger_app
_PG_PORT_BASE=54320
_PG_PORT_LAST=54419

_pg_say() { printf 'postgres: %s\n' "$*" >&2; }
_pg_err() { printf 'postgres: error: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Server binaries
# ---------------------------------------------------------------------------

# Prints the directory holding initdb/pg_ctl/postgres, or nothing.
_pg_find_bindir() {
	local d
	if command -v pg_config >/dev/null 2>&1; then
		d="$(pg_config --bindir 2>/dev/null || true)"
		# pg_config may come from libpq-dev without a server next to it.
		if [[ -n $d && -x $d/initdb ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	fi
	d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
		sort -V | tail -n 1 || true)"
	if [[ -n $d && -x $d/initdb ]]; then
		printf '%s\n' "$d"
		return 0
	fi
	# Non-Debian layouts (Homebrew, Fedora) put initdb on PATH.
	d="$(command -v initdb 2>/dev/null || true)"
	if [[ -n $d ]]; then
		dirname "$d"
	fi
}

_pg_install_server() {
	local -a sudo=()
	if ((EUID != 0)); then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			_pg_err "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found and not root;" \
				"install them, e.g. 'apt-get install postgresql' (Debian/Ubuntu)"
			return 1
		fi
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		_pg_err "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found;" \
			"install the PostgreSQL server package with your package manager"
		return 1
	fi
	_pg_say "server binaries not found; installing the 'postgresql' package"
	# Debian's postinst may create/start its own 'main' cluster; we ignore it.
	if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2; }; then
		_pg_err "installing 'postgresql' failed; install PostgreSQL server binaries manually"
		return 1
	fi
}

# Sets _PG_BIN. Prefers the major version that initialised an existing data
# dir, since a newer server refuses to open it.
_pg_select_bindir() {
	local data="$1" want have
	_PG_BIN="$(_pg_find_bindir)"
	if [[ -z $_PG_BIN ]]; then
		_pg_install_server || return 1
		_PG_BIN="$(_pg_find_bindir)"
		if [[ -z $_PG_BIN ]]; then
			_pg_err "PostgreSQL server binaries still not found after installing"
			return 1
		fi
	fi
	if [[ -f $data/PG_VERSION ]]; then
		want="$(<"$data/PG_VERSION")"
		# "postgres (PostgreSQL) 15.18 (Debian ...)" -> 15
		have="$("$_PG_BIN/postgres" --version | awk '{print $3}' || true)"
		have="${have%%[!0-9]*}"
		if [[ $want != "$have" ]]; then
			if [[ -x /usr/lib/postgresql/$want/bin/postgres ]]; then
				_PG_BIN="/usr/lib/postgresql/$want/bin"
			else
				_pg_err "$data was created by PostgreSQL $want but only $have is installed;" \
					"delete that cluster folder to start afresh"
				return 1
			fi
		fi
	fi
}

# ---------------------------------------------------------------------------
# Running as the server user
# ---------------------------------------------------------------------------

# initdb and postgres refuse to run as root. As root we use the 'postgres'
# system user, or create a dedicated one if it does not exist.
_pg_system_user() {
	if id -u postgres >/dev/null 2>&1; then
		printf 'postgres\n'
		return 0
	fi
	if ! id -u crowdledger-pg >/dev/null 2>&1; then
		_pg_say "creating system user crowdledger-pg to run the server"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin crowdledger-pg >&2 || {
			_pg_err "could not create system user crowdledger-pg"
			return 1
		}
	fi
	printf 'crowdledger-pg\n'
}

# Runs a command as $_PG_USER (root case) or directly (normal user).
# cd / first: the server user may not be able to read the caller's cwd, and
# initdb/postgres complain when they cannot resolve it.
_pg_as() {
	if [[ -z ${_PG_USER:-} ]]; then
		"$@"
		return
	fi
	(
		cd / || exit 1
		if command -v runuser >/dev/null 2>&1; then
			exec runuser -u "$_PG_USER" -- "$@"
		else
			# shellcheck disable=SC2016 # $0/$@ are expanded by the inner sh
			exec su -s /bin/sh -c 'exec "$0" "$@"' -- "$_PG_USER" "$@"
		fi
	)
}

# Like _pg_as, but with every fd above 2 closed (our lock, and any pipe an
# outer tool such as CI handed down): the daemon spawned by pg_ctl must not
# keep those open after we exit.
_pg_as_detached() {
	(
		local f n
		for f in /proc/"$BASHPID"/fd/*; do
			n="${f##*/}"
			if [[ $n =~ ^[0-9]+$ ]] && ((n > 2)); then
				exec {n}>&- 2>/dev/null || true
			fi
		done
		_pg_as "$@"
	)
}

# Writes stdin to FILE, owned by the server user (it must read it).
_pg_put() {
	local file="$1"
	(umask 077 && cat >"$file") || return 1
	if [[ -n ${_PG_USER:-} ]]; then
		chown "$_PG_USER:" "$file" || return 1
	fi
}

# ---------------------------------------------------------------------------
# Cluster folder
# ---------------------------------------------------------------------------

_pg_check_name() {
	if [[ ! ${1:-} =~ ^[A-Za-z0-9_-]+$ ]]; then
		_pg_err "invalid cluster name '${1:-}' (use letters, digits, _ and -)"
		return 1
	fi
}

# Sets _PG_NAME, _PG_LINK (<repo>/.pg/NAME), _PG_DIR (real folder, may be the
# /var/tmp fallback), _PG_DATA and _PG_USER, creating what is missing when
# $2 is "create". Returns 2 if the cluster does not exist and $2 != create.
_pg_locate() {
	local name="$1" mode="${2:-}" owner base hash
	_PG_NAME="$name"
	_PG_LINK="$_PG_ROOT/$name"
	_PG_USER=""

	if [[ -L $_PG_LINK && ! -d $_PG_LINK && $mode == create ]]; then
		# Dangling link (e.g. /var/tmp was cleaned): start afresh.
		rm -f "$_PG_LINK" || return 1
	fi
	if [[ -L $_PG_LINK ]]; then
		_PG_DIR="$(readlink "$_PG_LINK")"
	elif [[ -d $_PG_LINK ]]; then
		_PG_DIR="$_PG_LINK"
	elif [[ $mode != create ]]; then
		return 2
	else
		_PG_DIR=""
	fi
	_PG_DATA="$_PG_DIR/data"
	if [[ $mode != create && ! -d $_PG_DATA ]]; then
		return 2
	fi

	if ((EUID == 0)); then
		if [[ -n $_PG_DIR && -d $_PG_DIR ]]; then
			owner="$(stat -c %U "$_PG_DIR")"
		else
			owner=root
		fi
		if [[ $owner == root ]]; then
			if [[ -n $_PG_DIR && -e $_PG_DIR/data ]]; then
				_pg_err "$_PG_DIR/data is owned by root; postgres cannot run as root." \
					"Delete $_PG_LINK to start afresh"
				return 1
			fi
			_PG_USER="$(_pg_system_user)" || return 1
		else
			_PG_USER="$owner"
		fi
	fi

	[[ $mode == create ]] || return 0

	mkdir -p "$_PG_ROOT" || return 1
	if [[ -z $_PG_DIR ]]; then
		_PG_DIR="$_PG_LINK"
		if [[ -n $_PG_USER ]] && ! _pg_as test -x "$_PG_ROOT/."; then
			# The server user cannot reach the repo (e.g. it lives under a
			# 0700 /root): keep the real folder in /var/tmp and link to it.
			hash="$(printf '%s' "$_PG_REPO" | sha256sum | cut -c1-12)"
			base="/var/tmp/crowdledger-pg-$hash"
			if [[ -e $base || -L $base ]]; then
				# /var/tmp is world-writable: only trust a root-owned real dir.
				if [[ -L $base || ! -d $base || $(stat -c %u "$base") != 0 ]]; then
					_pg_err "$base exists but is not a root-owned directory; remove it"
					return 1
				fi
			else
				mkdir -m 0755 "$base" || return 1
			fi
			_PG_DIR="$base/$name"
			_pg_say "server user $_PG_USER cannot access $_PG_ROOT; using $_PG_DIR"
			ln -sfn "$_PG_DIR" "$_PG_LINK" || return 1
		fi
	fi
	if [[ ! -d $_PG_DIR ]]; then
		mkdir -p "$_PG_DIR" || return 1
	fi
	if [[ -n $_PG_USER ]]; then
		chown "$_PG_USER:" "$_PG_DIR" || return 1
		if ! _pg_as test -x "$_PG_DIR/."; then
			_pg_err "server user $_PG_USER cannot access $_PG_DIR; move the repo" \
				"somewhere readable or delete $_PG_LINK so it is recreated in /var/tmp"
			return 1
		fi
	elif [[ $(stat -c %u "$_PG_DIR") != "$EUID" ]]; then
		_pg_err "$_PG_DIR belongs to $(stat -c %U "$_PG_DIR"); run as that user or as root"
		return 1
	fi
	chmod 0700 "$_PG_DIR" || return 1
	_PG_DATA="$_PG_DIR/data"
}

# Display name for messages.
_pg_label() { printf '.pg/%s' "$_PG_NAME"; }

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------

# True if something listens on PORT (any address: a 0.0.0.0 listener would
# clash with our 127.0.0.1 bind too).
_pg_port_busy() {
	local port="$1"
	if command -v ss >/dev/null 2>&1; then
		[[ -n $(ss -Hltn "sport = :$port" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

# True if another of our clusters (this repo or a /var/tmp fallback of any
# checkout) has recorded PORT, even if it is not running right now.
_pg_port_claimed() {
	local port="$1" f me other
	me="$(readlink -f "$_PG_DIR")"
	for f in "$_PG_ROOT"/*/port /var/tmp/crowdledger-pg-*/*/port; do
		[[ -f $f ]] || continue
		other="$(readlink -f "$(dirname "$f")")"
		[[ $other == "$me" ]] && continue
		[[ $(head -n 1 "$f" 2>/dev/null) == "$port" ]] && return 0
	done
	return 1
}

# Prints the port to use: the recorded one if still free, else the first
# free and unclaimed one from 54320 on.
_pg_pick_port() {
	local port=""
	if [[ -f $_PG_DIR/port ]]; then
		port="$(head -n 1 "$_PG_DIR/port")"
		if [[ $port =~ ^[0-9]+$ ]] && ! _pg_port_busy "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
		_pg_say "recorded port ${port:-?} of $(_pg_label) is taken; picking another"
	fi
	for ((port = _PG_PORT_BASE; port <= _PG_PORT_LAST; port++)); do
		if ! _pg_port_claimed "$port" && ! _pg_port_busy "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	_pg_err "no free port in $_PG_PORT_BASE-$_PG_PORT_LAST"
	return 1
}

# ---------------------------------------------------------------------------
# Server state
# ---------------------------------------------------------------------------

# True if the postmaster recorded in postmaster.pid is alive and really a
# postgres process (after a reboot the pid may belong to something else).
_pg_running() {
	local pid comm
	[[ -f $_PG_DATA/postmaster.pid ]] || return 1
	_pg_as "$_PG_BIN/pg_ctl" status -D "$_PG_DATA" >/dev/null 2>&1 || return 1
	pid="$(head -n 1 "$_PG_DATA/postmaster.pid" 2>/dev/null || true)"
	if [[ -r /proc/$pid/comm ]]; then
		comm="$(<"/proc/$pid/comm")"
		[[ $comm == postgres || $comm == postmaster ]] || return 1
		# A killed postmaster stays a zombie until reaped, and kill -0
		# (pg_ctl status) still succeeds on it.
		[[ $(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true) != Z ]] || return 1
	fi
	return 0
}

# Removes lock files left by a server that is no longer running (crash,
# kill -9, reboot). postgres would refuse to start if their pid got reused.
_pg_clear_stale() {
	local f
	if [[ -f $_PG_DATA/postmaster.pid ]]; then
		_pg_say "removing stale postmaster.pid of $(_pg_label)"
		rm -f "$_PG_DATA/postmaster.pid" || return 1
	fi
	for f in "$_PG_DIR"/.s.PGSQL.*; do
		[[ -e $f ]] && { rm -f "$f" || return 1; }
	done
	return 0
}

_pg_initdb() {
	local out
	if [[ -e $_PG_DATA && ! -f $_PG_DATA/PG_VERSION ]]; then
		# A half-initialised dir from an interrupted initdb; it is ours.
		_pg_say "removing incomplete data dir of $(_pg_label)"
		rm -rf "$_PG_DATA" || return 1
	fi
	_pg_say "initialising cluster $(_pg_label)${_PG_USER:+ (server runs as $_PG_USER)}"
	out="$(mktemp)" || return 1
	# trust auth is fine: the cluster only listens on 127.0.0.1 and on a
	# socket inside a 0700 folder, and holds development/test data only.
	if ! _pg_as "$_PG_BIN/initdb" -D "$_PG_DATA" --auth=trust \
		--username="$_PG_DB_USER" --encoding=UTF8 --locale=C >"$out" 2>&1; then
		cat "$out" >&2
		rm -f "$out"
		_pg_err "initdb failed for $(_pg_label)"
		return 1
	fi
	rm -f "$out"
	# Our settings live in crowdledger.conf, rewritten on each start.
	printf "\ninclude_if_exists = 'crowdledger.conf'\n" >>"$_PG_DATA/postgresql.conf" || return 1
}

# Quotes a value for postgresql.conf.
_pg_conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

_pg_write_conf() {
	local port="$1" sockdir="$_PG_DIR"
	# sun_path is 108 bytes; with a deep repo path disable the unix socket
	# (TCP on 127.0.0.1 is what DATABASE_URL uses anyway).
	if ((${#sockdir} + 20 > 107)); then
		sockdir=""
	fi
	{
		printf '# Managed by scripts/lib/pg.sh; rewritten on every start.\n'
		printf "listen_addresses = '127.0.0.1'\n"
		printf 'port = %s\n' "$port"
		printf 'unix_socket_directories = %s\n' "$(_pg_conf_quote "$sockdir")"
		printf 'max_connections = 200\n'
		if [[ $_PG_NAME == test ]]; then
			# Test databases are disposable: trade crash safety for speed.
			printf 'fsync = off\n'
			printf 'synchronous_commit = off\n'
			printf 'full_page_writes = off\n'
		fi
	} | _pg_put "$_PG_DATA/crowdledger.conf" || return 1
	printf '%s\n' "$port" | _pg_put "$_PG_DIR/port"
}

# Starts the server; retries because after a kill -9 the old backends may
# still hold shared memory or the port for a moment.
_pg_start() {
	local attempt port out
	out="$(mktemp)" || return 1
	for attempt in 1 2 3; do
		port="$(_pg_pick_port)" || {
			rm -f "$out"
			return 1
		}
		_pg_write_conf "$port" || {
			rm -f "$out"
			return 1
		}
		_pg_say "starting cluster $(_pg_label) on 127.0.0.1:$port"
		# -l sends the daemon's output to the log and stdin from /dev/null
		# and pg_ctl detaches it, so it never holds the caller's pipes (CI
		# waits on those); _pg_as_detached closes all other inherited fds.
		if _pg_as_detached "$_PG_BIN/pg_ctl" -D "$_PG_DATA" -l "$_PG_DIR/postgres.log" \
			-w -t 60 start </dev/null >"$out" 2>&1; then
			rm -f "$out"
			_PG_PORT="$port"
			return 0
		fi
		if ((attempt < 3)); then
			_pg_say "start failed, retrying (see $_PG_DIR/postgres.log)"
			sleep 2
			_pg_running || _pg_clear_stale || true
		fi
	done
	cat "$out" >&2
	rm -f "$out"
	tail -n 20 "$_PG_DIR/postgres.log" >&2 2>/dev/null || true
	_pg_err "could not start cluster $(_pg_label); log: $_PG_DIR/postgres.log"
	return 1
}

_pg_psql() {
	PGSSLMODE=disable PGCONNECT_TIMEOUT=10 "$_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$_PG_PORT" -U "$_PG_DB_USER" "$@"
}

_pg_wait_ready() {
	local i
	for ((i = 0; i < 60; i++)); do
		"$_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$_PG_PORT" -U "$_PG_DB_USER" -d postgres && return 0
		sleep 1
	done
	_pg_err "cluster $(_pg_label) does not accept connections on 127.0.0.1:$_PG_PORT"
	return 1
}

# Creates the app role (migrations create it too, on clusters this file never set up) and the
# service's login in it, if missing. No password: the cluster trusts local connections.
_pg_ensure_roles() {
	_pg_psql -d postgres -c "set client_min_messages = warning" -c "
		do \$\$
		begin
		    if not exists (select from pg_roles where rolname = '$_PG_APP_ROLE') then
		        create role $_PG_APP_ROLE nologin;
		    end if;
		exception
		    -- a migration in another database of this cluster created it just now
		    when duplicate_object or unique_violation then null;
		end \$\$" -c "
		do \$\$
		begin
		    if not exists (select from pg_roles where rolname = '$_PG_SERVICE_USER') then
		        create role $_PG_SERVICE_USER login;
		    end if;
		end \$\$" -c "grant $_PG_APP_ROLE to $_PG_SERVICE_USER" >/dev/null
}

_pg_lock() {
	_PG_LOCK_FD=""
	mkdir -p "$_PG_ROOT" || return 1
	command -v flock >/dev/null 2>&1 || return 0
	# Serialises concurrent starts (port choice, initdb, createdb).
	exec {_PG_LOCK_FD}>>"$_PG_ROOT/.lock" || return 1
	flock -w 300 "$_PG_LOCK_FD" || {
		_pg_unlock
		_pg_err "timed out waiting for $_PG_ROOT/.lock"
		return 1
	}
}

_pg_unlock() {
	if [[ -n ${_PG_LOCK_FD:-} ]]; then
		exec {_PG_LOCK_FD}>&-
		_PG_LOCK_FD=""
	fi
}

# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------

_pg_ensure_locked() {
	local name="$1" db="$2" exists
	_pg_locate "$name" create || return 1
	_pg_select_bindir "$_PG_DATA" || return 1

	PG_STARTED_BY_US=0
	if _pg_running; then
		_PG_PORT="$(sed -n 4p "$_PG_DATA/postmaster.pid")"
		_pg_say "reusing running cluster $(_pg_label) on 127.0.0.1:$_PG_PORT"
		[[ -f $_PG_DIR/port ]] || printf '%s\n' "$_PG_PORT" | _pg_put "$_PG_DIR/port" || true
	else
		if [[ ! -f $_PG_DATA/PG_VERSION ]]; then
			_pg_initdb || return 1
		fi
		_pg_clear_stale || return 1
		_pg_start || return 1
		PG_STARTED_BY_US=1
	fi
	_pg_wait_ready || return 1

	exists="$(_pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$db'")" || {
		_pg_err "cannot query cluster $(_pg_label)"
		return 1
	}
	if [[ $exists != 1 ]]; then
		_pg_say "creating database $db"
		PGSSLMODE=disable "$_PG_BIN/createdb" -h 127.0.0.1 -p "$_PG_PORT" \
			-U "$_PG_DB_USER" "$db" || {
			_pg_err "createdb $db failed"
			return 1
		}
	fi
	_pg_ensure_roles || {
		_pg_err "could not create the roles $_PG_APP_ROLE and $_PG_SERVICE_USER"
		return 1
	}
	DATABASE_URL="postgres://$_PG_DB_USER@127.0.0.1:$_PG_PORT/$db"
	PG_SERVICE_URL="postgres://$_PG_SERVICE_USER@127.0.0.1:$_PG_PORT/$db"
	export DATABASE_URL PG_SERVICE_URL PG_STARTED_BY_US
}

pg_ensure() {
	local name="${1:-}" db="${2:-crowdledger}" rc=0
	_pg_check_name "$name" || return 1
	if [[ ! $db =~ ^[A-Za-z0-9_]+$ ]]; then
		_pg_err "invalid database name '$db' (use letters, digits and _)"
		return 1
	fi
	_pg_lock || return 1
	_pg_ensure_locked "$name" "$db" || rc=$?
	_pg_unlock
	return "$rc"
}

# An immediate stop writes no checkpoint: the next start recovers from the WAL.
pg_stop() {
	local name="${1:-}" mode="${2:-fast}" rc=0 out
	_pg_check_name "$name" || return 1
	_pg_locate "$name" || {
		rc=$?
		((rc == 2)) && { _pg_say "no cluster $(_pg_label)"; return 0; }
		return "$rc"
	}
	_pg_select_bindir "$_PG_DATA" || return 1
	_pg_lock || return 1
	if _pg_running; then
		_pg_say "stopping cluster $(_pg_label) ($mode)"
		out="$(mktemp)" || { _pg_unlock; return 1; }
		if ! _pg_as "$_PG_BIN/pg_ctl" -D "$_PG_DATA" -m "$mode" -w -t 60 stop \
			</dev/null >"$out" 2>&1; then
			cat "$out" >&2
			_pg_err "could not stop cluster $(_pg_label)"
			rc=1
		fi
		rm -f "$out"
	else
		_pg_say "cluster $(_pg_label) is not running"
	fi
	_pg_unlock
	return "$rc"
}
