#!/usr/bin/env bash
# Replays every committed seed of every fuzz target once (libFuzzer -runs=0): each seed is a
# case the target's properties must hold on, regressions included (`regress-*`, the inputs that
# once found a bug). Needs the plain builds of `make fuzz-build` (no sanitizer: replaying checks
# the properties, fuzzing itself is `make fuzz`). Prints one cargo-style result line per target.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
status=0
for source in "$root"/fuzz/fuzz_targets/*.rs; do
    target="$(basename "$source" .rs)"
    seeds="$root/fuzz/seeds/$target"
    count="$(find "$seeds" -type f | wc -l)"
    if "$root/fuzz/target/release/$target" -runs=0 "$seeds" >"$root/target/fuzz-replay-$target.log" 2>&1; then
        echo "test result: ok. $count passed; 0 failed; fuzz seeds of $target"
    else
        echo "fuzz target $target fails on a seed:" >&2
        tail -30 "$root/target/fuzz-replay-$target.log" >&2
        # One process per seed, to count how many fail.
        failed=0
        for seed in "$seeds"/*; do
            "$root/fuzz/target/release/$target" -runs=0 "$seed" >/dev/null 2>&1 || failed=$((failed + 1))
        done
        echo "test result: FAILED. $((count - failed)) passed; $failed failed; fuzz seeds of $target"
        status=1
    fi
done
exit "$status"
