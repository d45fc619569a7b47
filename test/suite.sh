#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Run one suite of `make test`: its output goes to the terminal and to
# RESULTS/NAME.log; RESULTS/NAME gets one line "PASSED FAILED NOTE", counted
# from Criterion's synthesis line, a line "NAME: N passed, N failed" (Python
# helper, demo, install) or "check: ... clean". A command that fails without
# reporting a failure counts as one failed, named by its exit status. Always
# exits 0: the summary decides.
# usage: sh test/suite.sh RESULTS NAME COMMAND [ARG...]
dir=$1 name=$2
shift 2
mkdir -p "$dir"
echo "== $name"
{ "$@" 2>&1; echo $? >"$dir/$name.rc"; } | tee "$dir/$name.log"
rc=$(cat "$dir/$name.rc" 2>/dev/null || echo 1)
awk -v rc="$rc" '
/\[====\] Synthesis: Tested:/ {
	for (i = 1; i <= NF; i++) {
		if ($i == "Passing:") p += $(i + 1)
		if ($i == "Failing:") f += $(i + 1)
		if ($i == "Crashing:") f += $(i + 1)
	}
	counted = 1
}
/^[a-z_-]+: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4; counted = 1 }
/^check: .* clean$/ { p += 1; counted = 1 }
END {
	note = ""
	if (rc != 0 && f == 0) { f = 1; note = "exit " rc }
	else if (rc == 0 && !counted) p = 1
	print p + 0, f + 0, note
}' "$dir/$name.log" >"$dir/$name"
exit 0
