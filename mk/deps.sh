#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# What memctl's build, demo and tests need: each dependency is checked by
# what the build really does with it (compile a header, link a library, run
# a command) and named when missing. With --install, what is missing is
# installed with apt-get, as root or through `sudo -n`, enabling the archive
# components that hold it (Debian: contrib, non-free; Ubuntu: universe,
# multiverse, restricted for the driver library nvidia-cuda-dev depends on)
# in either style of apt sources. Otherwise, or where that is not possible,
# it stops with the one command to run.
#
# usage: sh mk/deps.sh [--install] [--quiet] demo|test
#   demo  what `make`, `make install` and `make demo` need
#   test  that and what `make test` needs
# environment: CC, CUDA_HOME (as the Makefile passes them)
set -u
CC=${CC:-cc}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

# One line per dependency:
#     needed by  name in messages     probe                                 apt packages
deps() {
	dep demo "C compiler ($CC)"   "compiler"                             gcc libc6-dev
	dep demo "uthash"             "header uthash.h"                      uthash-dev
	dep demo "CUDA headers"       "cuda"                                 nvidia-cuda-dev
	dep demo "jansson"            "library jansson.h jansson"            libjansson-dev
	dep demo "libmicrohttpd"      "library microhttpd.h microhttpd"      libmicrohttpd-dev
	dep test "Criterion"          "library criterion/criterion.h criterion" libcriterion-dev
	dep test "nm, readelf"        "program nm readelf"                   binutils
	dep test "python3"            "program python3"                      python3
	dep test "curl"               "program curl"                         curl
	dep test "promtool"           "program promtool"                     prometheus
}

# ---- probes: exit 0 when the dependency is usable ------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memctl-deps-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

compiler() {
	printf 'int main(void) { return 0; }\n' >"$tmp/c.c"
	$CC -o "$tmp/c" "$tmp/c.c" >/dev/null 2>&1
}
header() {
	printf '#include <%s>\n' "$1" >"$tmp/h.c"
	$CC -E -I"$CUDA_HOME/include" "$tmp/h.c" >/dev/null 2>&1
}
library() {
	printf '#include <%s>\nint main(void) { return 0; }\n' "$1" >"$tmp/l.c"
	$CC -o "$tmp/l" "$tmp/l.c" -l"$2" >/dev/null 2>&1
}
program() {
	for c in "$@"; do command -v "$c" >/dev/null 2>&1 || return 1; done
}
cuda() {
	header cuda.h && header cuda_runtime_api.h
}
# Where the compiler found cuda.h, for the messages.
cuda_where() {
	printf '#include <cuda.h>\n' >"$tmp/w.c"
	$CC -M -I"$CUDA_HOME/include" "$tmp/w.c" 2>/dev/null |
		tr ' \\' '\n\n' | sed -n 's|/cuda\.h$||p' | head -n 1
}

# ---- which are missing -----------------------------------------------------
want=$1
missing=""   # names, one a line
packages=""  # apt packages of the missing ones
have_cc=1
dep() {
	[ "$1" = demo ] || [ "$want" = test ] || return 0
	name=$2 probe=$3
	shift 3
	case $probe in
	compiler) ;;
	program*) ;;
	*) [ $have_cc = 1 ] || { packages="$packages $*"; return 0; } ;;
	esac
	# shellcheck disable=SC2086
	if ! $probe; then
		[ "$probe" = compiler ] && have_cc=0
		missing="$missing
  $name (apt package: $*)"
		[ "$probe" = cuda ] && missing="$missing
    looked in \$CUDA_HOME/include ($CUDA_HOME/include) and the compiler's own path;
    a CUDA Toolkit elsewhere: make CUDA_HOME=/path/to/cuda ..."
		packages="$packages $*"
	fi
}

# ---- installing them ------------------------------------------------------
apt_run() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
has_candidate() {
	LC_ALL=C apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'
}

# The archive components that hold the packages main lacks.
extra_components() {
	. /etc/os-release
	case " ${ID:-} ${ID_LIKE:-} " in
	*" ubuntu "*) echo "restricted universe multiverse" ;;
	*) echo "contrib non-free" ;;
	esac
}

# Add components to every apt source that carries `main`, one-line style
# (sources.list, *.list) and deb822 style (*.sources).
enable_components() {
	add=$(extra_components)
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		 /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v add="$add" -v deb822="$(case $f in *.sources) echo 1 ;; esac)" '
		function extend(   n, a, i, j, found) {
			n = split(add, a, " ")
			for (j = 1; j <= n; j++) {
				found = 0
				for (i = 1; i <= NF; i++) if ($i == a[j]) found = 1
				if (!found) $0 = $0 " " a[j]
			}
		}
		{
			is_main = 0
			for (i = 2; i <= NF; i++) if ($i == "main") is_main = 1
			if (deb822 && tolower($1) == "components:" && is_main) extend()
			if (!deb822 && $1 ~ /^deb(-src)?$/ && is_main) extend()
			print
		}' "$f" >"$tmp/sources" || return 1
		if ! cmp -s "$f" "$tmp/sources"; then
			echo "deps: enabling $add in $f"
			$sudo cp "$tmp/sources" "$f" || return 1
		fi
	done
}

install_missing() {
	echo "deps: installing with apt-get:$packages"
	apt_run update -qq || return 1
	for p in $packages; do
		has_candidate "$p" && continue
		enable_components && apt_run update -qq || return 1
		break
	done
	for p in $packages; do
		has_candidate "$p" ||
			{ echo "deps: no apt source offers $p"; return 1; }
	done
	# shellcheck disable=SC2086
	apt_run install -y -qq --no-install-recommends $packages >"$tmp/apt.log" 2>&1 ||
		{ tail -n 20 "$tmp/apt.log"; return 1; }
	quiet_services
}

# The tests want promtool only; Debian's prometheus package also starts a
# Prometheus server where systemd runs. Stop the one this script installed.
quiet_services() {
	case " $packages " in *" prometheus "*) ;; *) return 0 ;; esac
	[ -d /run/systemd/system ] || return 0
	echo "deps: stopping and disabling the prometheus service the package started (the tests need only promtool)"
	$sudo systemctl disable --now prometheus.service || true
}

install=0 quiet=0
while [ $# -gt 0 ]; do
	case $1 in
	--install) install=1 ;;
	--quiet) quiet=1 ;;
	demo|test) want=$1 ;;
	*) echo "usage: sh mk/deps.sh [--install] [--quiet] demo|test" >&2; exit 2 ;;
	esac
	shift
done

deps
if [ -z "$packages" ]; then
	[ $quiet = 1 ] || echo "deps: everything '$want' needs is here (CUDA headers from $(cuda_where))"
	exit 0
fi
[ -n "$missing" ] && echo "deps: memctl needs, and this machine lacks:$missing"

how="sudo make deps$( [ "$want" = demo ] && echo -demo)"
if [ $install = 0 ]; then
	echo "deps: run '$how' to install them (apt-get), then try again"
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: no apt-get here: install the above with your package manager"
	exit 1
fi
if [ "$(id -u)" = 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo="sudo -n"
else
	echo "deps: not root, and no sudo without a password; run: $how"
	exit 1
fi
install_missing || { echo "deps: installing failed; see above"; exit 1; }

missing="" packages="" have_cc=1
deps
if [ -n "$missing" ]; then
	echo "deps: still missing after installing:$missing"
	exit 1
fi
echo "deps: everything '$want' needs is here now (CUDA headers from $(cuda_where))"
