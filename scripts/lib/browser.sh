# shellcheck shell=bash
# Chromium and its WebDriver for the console's browser tests (tests/api/console_browser.rs).
# Debian's `chromium` and `chromium-driver` are installed with apt-get when missing, as pg.sh
# installs Postgres. `browser_ensure` exports CHROMEDRIVER; when the browser cannot be had at
# all it exports CONSOLE_BROWSER_SKIP with the reason instead, and the tests skip saying so
# (under CI=true they fail: CI must run them).

_browser_found() {
	command -v chromedriver >/dev/null 2>&1 &&
		{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
}

_browser_install() {
	local -a sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || return 1
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null 2>&1 || return 1
	echo "browser: chromium not found; installing 'chromium' and 'chromium-driver'" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
}

browser_ensure() {
	if [[ -n ${CHROMEDRIVER:-} && -x $CHROMEDRIVER ]]; then
		return 0
	fi
	if ! _browser_found && ! _browser_install; then
		export CONSOLE_BROWSER_SKIP="chromium and chromium-driver are not installed and could not be installed with apt-get"
		echo "browser: $CONSOLE_BROWSER_SKIP; the console's browser tests will skip" >&2
		return 0
	fi
	CHROMEDRIVER="$(command -v chromedriver)"
	export CHROMEDRIVER
}
