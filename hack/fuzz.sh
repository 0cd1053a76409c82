#!/usr/bin/env bash
# Run every Go fuzz target for a bounded time, one target at a time.
#
#   hack/fuzz.sh [SECONDS] [DIR...]
#
# SECONDS (default 10, or $FUZZTIME) is the budget per target; DIRs
# (default: the whole module) are searched for `func FuzzXxx(f *testing.F)`
# in *_test.go files. Each target runs as
#
#   go test -run XXX -fuzz '^FuzzXxx$' -fuzztime SECONDSs ./DIR
#
# Failing inputs are written by go test to DIR/testdata/fuzz/FuzzXxx/ and
# then replay in every plain `go test` run. The script exits non-zero if
# any target failed, after running all of them. It needs only the go tool.
set -euo pipefail

cd "$(dirname "$0")/.."
secs=${FUZZTIME:-10}
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
	secs=$1
	shift
fi
dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=(.)

failed=()
count=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	while IFS= read -r name; do
		count=$((count + 1))
		echo "=== ${dir#./} ${name} (${secs}s)"
		if ! go test -run XXX -fuzz "^${name}\$" -fuzztime "${secs}s" "./${dir#./}"; then
			failed+=("${dir#./} ${name}")
		fi
	done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$file")
done < <(find "${dirs[@]}" -name '*_test.go' -not -path '*/vendor/*' -not -path '*/testdata/*' -print0 |
	xargs -0 grep -l '^func Fuzz' | sort)

echo "--- ${count} fuzz targets, ${#failed[@]} failed"
for f in "${failed[@]}"; do
	echo "FAIL: $f"
done
[[ ${#failed[@]} -eq 0 ]]
