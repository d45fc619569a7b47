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
# torch_memory_saver's name: never by make install, only when asked, and
# never over another torch_memory_saver.
[ -z "$(find "$D" -name torch_memory_saver)" ] && ok ||
	bad "make install installed torch_memory_saver"
if $MAKE --no-print-directory install-tms-compat DESTDIR="$D" PREFIX="$P" >"$D/.log" 2>&1; then
	ok
else
	bad "make install-tms-compat DESTDIR=$D PREFIX=$P failed:"; cat "$D/.log"
fi
outside=$(find "$D" -type f ! -path "$D$P/*" ! -path "$D/.*")
[ -z "$outside" ] && ok || bad "install-tms-compat installed outside PREFIX: $outside"
if [ -n "$site" ]; then
	got=$(cd / && env -u LD_PRELOAD PYTHONPATH="$site" $PYTHON -c \
		'import torch_memory_saver as t; print(t.__file__); print(type(t.torch_memory_saver).__module__)' 2>&1)
	want="$site/torch_memory_saver/__init__.py
memctl.tms"
	[ "$got" = "$want" ] && ok || bad "installed torch_memory_saver: got '$got', want '$want'"
	# Installing again over its own files is fine; over another one is not.
	$MAKE --no-print-directory install-tms-compat DESTDIR="$D" PREFIX="$P" >"$D/.log" 2>&1 &&
		ok || bad "install-tms-compat over its own files failed"
	printf 'real = True\n' >"$site/torch_memory_saver/__init__.py"
	if $MAKE --no-print-directory install-tms-compat DESTDIR="$D" PREFIX="$P" >"$D/.log" 2>&1; then
		bad "install-tms-compat replaced another torch_memory_saver"
	else
		grep -q "another torch_memory_saver" "$D/.log" && ok || bad "refusal unclear: $(cat "$D/.log")"
	fi
	[ "$(cat "$site/torch_memory_saver/__init__.py")" = "real = True" ] && ok ||
		bad "the other torch_memory_saver was changed"
fi
echo "install: $pass passed, $fail failed"
[ $fail -eq 0 ]
