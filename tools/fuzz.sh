#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, seeded from fuzz/seeds/<target>.
#
#   tools/fuzz.sh <target> [seconds]      targets: token, inspector; seconds default 600
#
# Extra libFuzzer flags can be given in FUZZ_ARGS (e.g. FUZZ_ARGS="-jobs=2 -workers=2").
# MCP_GUARD_FUZZ_SKIP=name[,name] switches off a property with a known, reported finding (see
# fuzz/fuzz_targets/common/mod.rs); by default every property is checked.
# cargo-fuzz needs nightly-only rustc flags; this uses the stable toolchain with
# RUSTC_BOOTSTRAP=1 (only for this build, in fuzz/target, never for the shipped module).
# The working corpus is fuzz/corpus/<target> (not committed); crashes land in
# fuzz/artifacts/<target>/. Exits non-zero on any crash, property failure, timeout or OOM.
set -euo pipefail

target="${1:-}"
seconds="${2:-600}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"

usage() {
    echo "usage: $0 <target> [seconds]   (targets: $(ls "$fuzz_dir/fuzz_targets" | sed -n 's/\.rs$//p' | tr '\n' ' '))" >&2
    exit 2
}
[[ -n "$target" ]] || usage
[[ -f "$fuzz_dir/fuzz_targets/$target.rs" ]] || { echo "unknown target: $target" >&2; usage; }
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "seconds must be a whole number: $seconds" >&2; usage; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
seeds="$fuzz_dir/seeds/$target"
corpus="$fuzz_dir/corpus/$target"
mkdir -p "$corpus" "$seeds"

dict_args=()
if [[ -f "$fuzz_dir/dicts/$target.dict" ]]; then
    dict_args=(-dict="$fuzz_dir/dicts/$target.dict")
fi

cd "$root"
# New inputs are written to the first corpus directory only; the seeds stay as committed.
# shellcheck disable=SC2086
exec cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$corpus" "$seeds" -- \
    -max_total_time="$seconds" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -max_len=16384 \
    -print_final_stats=1 \
    "${dict_args[@]}" \
    ${FUZZ_ARGS:-}
