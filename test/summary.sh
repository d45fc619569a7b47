#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The closing line of `make test`, from the results test/suite.sh left:
#   make test: 120 passed, 0 failed
#   make test: 119 passed, 1 failed (e2e_ctl: 1 failed); not run: none
# A suite without a result did not run (its build failed: it counts as one
# failure too); RESULTS/build, when present, says the build itself failed.
# Exits 1 when anything failed or did not run.
# usage: sh test/summary.sh RESULTS SUITE...
dir=$1
shift
passed=0 failed=0 what="" notrun=""
add() { what="${what:+$what, }$1"; }
if [ -f "$dir/build" ]; then
	failed=1; add "build: failed"
fi
for s in "$@"; do
	if [ ! -f "$dir/$s" ]; then
		notrun="$notrun $s"
		[ -f "$dir/build" ] || { failed=$((failed + 1)); add "$s: not built"; }
		continue
	fi
	read -r p f note <"$dir/$s"
	passed=$((passed + p)) failed=$((failed + f))
	[ "$f" -eq 0 ] || add "$s: ${note:-$f failed}"
done
if [ $failed -eq 0 ] && [ -z "$notrun" ]; then
	echo "make test: $passed passed, 0 failed"
	exit 0
fi
echo "make test: $passed passed, $failed failed${what:+ ($what)}; not run:${notrun:- none}"
exit 1
