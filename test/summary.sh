#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Sum the results of every suite in a `make test` log into one closing line.
# usage: sh test/summary.sh LOG EXIT_STATUS
log=$1
status=${2:-0}
awk -v status="$status" '
/\[====\] Synthesis: Tested:/ {
	for (i = 1; i <= NF; i++) {
		if ($i == "Passing:") p += $(i + 1)
		if ($i == "Failing:") f += $(i + 1)
		if ($i == "Crashing:") f += $(i + 1)
	}
	next
}
/^[a-z_-]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
/^check: .* clean$/ { p += 1 }
/^check: / && !/clean$/ { bad = 1 }
END {
	if (status != 0 && f == 0) f = 1   # a step failed outside any suite
	if (bad) f += 1
	printf "make test: %d passed, %d failed\n", p, f
}' "$log"
