#!/usr/bin/env bash
# Builds the Debian packages of both binaries (release) with cargo-deb:
# skycast-puller_<version>_<arch>.deb and skycast-publisher_<version>_<arch>.deb,
# written to target/debian/ (printed on the last line).
#
#   bash scripts/package.sh           # build (release) and package
#   bash scripts/package.sh --fast    # faster, larger compression (tests)
#
# The units, maintainer scripts and example configs are in puller/debian/ and
# publisher/debian/, the cargo-deb settings in each Cargo.toml's
# [package.metadata.deb]. cargo-deb comes from `bash scripts/install-deps.sh`.
# Packages are for this machine's architecture: for a Raspberry Pi, run this on
# the Pi (see README, "Install on a shop box").

set -euo pipefail

cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package: cargo-deb is missing: run \`bash scripts/install-deps.sh\` (or \`cargo install --locked cargo-deb\`)" >&2
    exit 1
fi

extra=()
for arg in "$@"; do
    case "$arg" in
        --fast) extra+=(--fast) ;;
        *)
            echo "package: unknown argument \`$arg\` (expected --fast)" >&2
            exit 2
            ;;
    esac
done

target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/debian"
mkdir -p "$out"
for package in skycast-puller skycast-publisher; do
    echo "package: building $package (release)" >&2
    cargo deb --locked -p "$package" --output "$out" ${extra[@]+"${extra[@]}"} >&2
done
ls -1 "$out"/skycast-puller_*.deb "$out"/skycast-publisher_*.deb >&2
echo "$(cd "$out" && pwd)"
