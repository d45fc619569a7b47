#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make install honours DESTDIR and PREFIX for everything it installs, the
# Python helper included: every file lands under DESTDIR/PREFIX, nothing in
# the running interpreter's own site-packages, and the installed helper
# imports from there and finds the installed library.
# usage: sh test/install.sh DESTDIR [MAKE]
set -u
D=$1 MAKE=${2:-make} P=/opt/memctl-test
PYTHON=${PYTHON:-python3}
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "install: $*"; fail=$((fail + 1)); }

rm -rf "$D" && mkdir -p "$D" && touch "$D/.start"
own=$($PYTHON -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if $MAKE --no-print-directory install DESTDIR="$D" PREFIX="$P" >"$D/.log" 2>&1; then
	ok
else
	bad "make install DESTDIR=$D PREFIX=$P failed:"; cat "$D/.log"
fi

outside=$(find "$D" -type f ! -path "$D$P/*" ! -path "$D/.*")
[ -z "$outside" ] && ok || bad "installed outside PREFIX: $outside"
[ -z "$(find "$own/memctl" -newer "$D/.start" 2>/dev/null)" ] && ok ||
	bad "wrote into $PYTHON's own site-packages $own"

for f in lib/libmemctl.so bin/memctl include/memctl.h share/man/man1/memctl.1; do
	[ -f "$D$P/$f" ] && ok || bad "$P/$f missing"
done

site=$(dirname "$(find "$D$P" -path '*/memctl/__init__.py' | head -n 1)" 2>/dev/null)
site=${site%/memctl}
if [ -n "$site" ]; then
	got=$(cd / && env -u LD_PRELOAD -u MEMCTL_LIBRARY PYTHONPATH="$site" $PYTHON -c \
		'import memctl; print(memctl.__file__); print(memctl.library_path())' 2>&1)
	want="$site/memctl/__init__.py
$(realpath -m "$D$P/lib/libmemctl.so")"
	[ "$got" = "$want" ] && ok || bad "installed helper: got '$got', want '$want'"
else
	bad "Python helper not installed under $P"
fi
echo "install: $pass passed, $fail failed"
[ $fail -eq 0 ]
