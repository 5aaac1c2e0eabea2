#!/usr/bin/env bash
# The one command that runs the whole test suite and the quality gates.
#
#   bash scripts/test.sh [EXTRA ARGS FOR THE TEST RUNNER]
#
# e.g. `bash scripts/test.sh -E 'test(swap)'` (nextest filter) or, when nextest
# is unavailable, `bash scripts/test.sh swap` (cargo test filter).
#
# Order: dependencies, build (the end-to-end tests start target/debug/skycast-*,
# so every binary is built first), tests, doc tests, then the gates (rustfmt,
# clippy -D warnings, schema purity). Every step after the dependency check
# runs even if an earlier one failed (except the tests, skipped when the build
# failed: they would only repeat its errors); the script exits 1 at the end if any
# step failed, after printing a summary with the seconds each step took.
#
# Environment:
#   SKYCAST_SKIP_APT=1   passed on to install-deps.sh (no system package changes)
#   CARGO_TARGET_DIR     honoured by cargo as usual

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Crates skycast-schema must never depend on (ARCHITECTURE.md, "schema does no I/O").
FORBIDDEN_IN_SCHEMA=(tokio reqwest axum rusqlite git2 rodio)

now() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        echo "${EPOCHREALTIME/,/.}"
    else
        date +%s
    fi
}

STEP_NAMES=()
STEP_RESULTS=()
STEP_TIMES=()
FAILED=0

# step NAME COMMAND...: run, time and record one step; never aborts the script.
step() {
    local name="$1"
    shift
    local t0 t1 secs rc=0
    printf '\n==> %s: %s\n' "$name" "$*"
    t0="$(now)"
    "$@" || rc=$?
    t1="$(now)"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    STEP_NAMES+=("$name")
    STEP_TIMES+=("$secs")
    if [[ $rc -eq 0 ]]; then
        STEP_RESULTS+=("ok")
        printf '<== %s: ok (%ss)\n' "$name" "$secs"
    else
        STEP_RESULTS+=("FAILED (exit $rc)")
        FAILED=1
        printf '<== %s: FAILED with exit %d (%ss)\n' "$name" "$rc" "$secs" >&2
    fi
    return 0
}

skip() {
    printf '\n==> %s: skipped (%s)\n' "$1" "$2"
    STEP_NAMES+=("$1")
    STEP_TIMES+=("0.0")
    STEP_RESULTS+=("skipped: $2")
}

summary() {
    local i
    printf '\n==================== summary ====================\n'
    for i in "${!STEP_NAMES[@]}"; do
        printf '%-16s %8ss  %s\n' "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}" "${STEP_RESULTS[$i]}"
    done
    if [[ $FAILED -eq 0 ]]; then
        printf 'ALL PASSED\n'
    else
        printf 'SOME STEPS FAILED\n'
    fi
}

# shellcheck disable=SC2317 # invoked through step
schema_purity() {
    local tree found=() crate
    tree="$(cargo tree -e normal -p skycast-schema --target all --prefix none --format '{p}')"
    for crate in "${FORBIDDEN_IN_SCHEMA[@]}"; do
        if grep -Eq "^${crate} v" <<<"$tree"; then
            found+=("$crate")
        fi
    done
    if [[ ${#found[@]} -gt 0 ]]; then
        for crate in "${found[@]}"; do
            echo "schema purity: skycast-schema depends on \`$crate\` (normal dependencies); the schema crate must do no I/O." >&2
            echo "  path: cargo tree -e normal -p skycast-schema -i $crate" >&2
            cargo tree -e normal -p skycast-schema --target all -i "$crate" >&2 || true
        done
        return 1
    fi
    echo "schema purity: none of ${FORBIDDEN_IN_SCHEMA[*]} in skycast-schema's normal dependencies"
}

# ---------------------------------------------------------------- dependencies
t0="$(now)"
if ! bash "$ROOT/scripts/install-deps.sh"; then
    echo "test.sh: scripts/install-deps.sh failed; cannot build without the toolchain." >&2
    exit 1
fi
STEP_NAMES+=("deps")
STEP_TIMES+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')")
STEP_RESULTS+=("ok")
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# ---------------------------------------------------------------- build and tests
step build cargo build --workspace --all-targets
# The release binaries, each built alone as cargo-deb (tests/tests/packaging.rs)
# and the benchmarks build them: the tests then find them built instead of
# compiling for minutes beside timing-sensitive tests.
step build-release bash -c 'cargo build --release -p skycast-puller && cargo build --release -p skycast-publisher'
BUILD_FAILED=$FAILED

if [[ $BUILD_FAILED -ne 0 ]]; then
    # The test runners would only rebuild and repeat the same compile errors.
    skip tests "the build failed"
    skip doctests "the build failed"
elif cargo nextest --version >/dev/null 2>&1; then
    # --no-tests=warn: a crate mid-development with no tests yet is not a failure.
    step tests cargo nextest run --workspace --no-fail-fast --no-tests=warn "$@"
    # nextest does not run doc tests.
    step doctests cargo test --workspace --doc
else
    echo "test.sh: cargo-nextest unavailable, using cargo test"
    step tests cargo test --workspace --no-fail-fast "$@"
    skip doctests "run by cargo test above"
fi

# ---------------------------------------------------------------- quality gates
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step schema-purity schema_purity

# ---------------------------------------------------------------- benchmarks
# Print figures: player decode-and-mix vs mpg123 and peak memory (fails only if
# it cannot run); web UI page times vs the style sheet (fails over 200 ms at the
# 95th percentile); report ingest and the dashboard at 10,000 players vs
# GET /v1/head (fails under 2,000 reports/s or over 100 ms at the 95th
# percentile); publish → every shop swapped at 100, 1,000 and 10,000 simulated
# shops and the head rate vs nginx (prints swapped p99 against 1 s at 1,000
# shops and 3 s at 10,000; fails when the server's fan-out, every long-poll
# answered, misses those, or under 50 % of nginx's rate); the chaos soak (an hour
# of shop time at --clock-rate 10 under faults; fails on silence the files do not
# hold, a publish that does not arrive, a fixed-time ad twice). Optimised builds:
# debug figures would say nothing.
if [[ $BUILD_FAILED -ne 0 ]]; then
    skip bench "the build failed"
    skip bench-web "the build failed"
    skip bench-fleet "the build failed"
    skip bench-scale "the build failed"
    skip soak "the build failed"
else
    step bench cargo bench -p skycast-puller --bench playback
    step bench-web cargo bench -p skycast-tests --bench web_pages
    # The fleet benchmark starts the real serve binary, optimised like itself.
    step bench-fleet bash -c 'cargo build --release -p skycast-publisher && cargo bench -p skycast-tests --bench fleet_reports'
    # Publish → every shop swapped at 100, 1,000 and 10,000 simulated shops, and
    # GET /v1/head vs nginx; the same release serve binary (a no-op build here).
    step bench-scale bash -c 'cargo build --release -p skycast-publisher && cargo bench -p skycast-tests --bench fleet_scale'
    # The chaos soak: six minutes of wall time, the release puller and publisher.
    step soak bash -c 'cargo build --release -p skycast-publisher -p skycast-puller && cargo bench -p skycast-tests --bench chaos_soak'
fi

summary
exit "$FAILED"
