#!/usr/bin/env bash
# Runs the given make targets, shows their output as it comes, and ends with one line of its
# own: `N passed, N failed`, summed over every cargo test block (and libFuzzer seed replay)
# they ran. Exits non-zero if any target failed, even when every counted test passed.
#
#   tools/test-summary.sh lint unit validate e2e
set -uo pipefail

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

make --no-print-directory "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

passed=0
failed=0
while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log")

# A failure make reported that no cargo block counted (a lint, a validation) counts as one.
if [[ $status -ne 0 && $failed -eq 0 ]]; then
    failed=1
fi
echo "$passed passed, $failed failed"
exit "$status"
