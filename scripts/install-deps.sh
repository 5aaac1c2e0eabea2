#!/usr/bin/env bash
# Installs what building, testing and the demo need on a fresh Debian/Ubuntu.
# Idempotent: installs only packages `dpkg -s` reports missing, runs
# `apt-get update` at most once, and does nothing when all is present.
# Runs apt as root, or through sudo when not root and sudo exists.
#
#   bash scripts/install-deps.sh
#
# Environment:
#   SKYCAST_SKIP_APT=1   do not touch system packages (only check cargo tools)
#
# Exit status: 0 when cargo is usable; 1 when cargo is missing, a needed
# system package could not be installed, or garage (the mirror tests' object
# storage, `cargo install --locked garage`) or cargo-deb (scripts/package.sh) could not be built. A missing cargo-nextest that cannot
# be installed is only a warning (scripts/test.sh falls back to `cargo test`).

set -euo pipefail

# Each entry is `package` (needed when `dpkg -s` says it is missing) or
# `package:command` (needed only when `command` is not on PATH either).
# Build: pkg-config, a C compiler (bundled SQLite, ring), ALSA headers (audio
# output). Demo: curl, python3 (free port, JSON), jq (JSON). HTTPS: ca-certificates.
# Playback tests and benchmark: mpg123 (an independent decoder and the reference
# of `cargo bench --bench playback`). Browser tests (tests/src/browser.rs):
# chromium and chromium-driver, which they run as /usr/bin/chromium and
# /usr/bin/chromedriver (so checked as packages, not as commands on PATH).
# Metrics test (tests/tests/fleet_web.rs): prometheus, for `promtool check metrics`.
# Fleet benchmark (tests/benches/fleet_scale.rs): nginx-light, the peer serving
# the same head JSON over TLS (run as /usr/sbin/nginx, which is not on every PATH).
# Packaging (scripts/package.sh, tests/tests/packaging.rs): dpkg-deb, fakeroot, and
# systemd's systemd-analyze (verify) and systemd-sysusers (the maintainer scripts).
PACKAGES=(
    pkg-config
    libasound2-dev
    ca-certificates
    curl
    build-essential:cc
    git:git
    python3:python3
    jq:jq
    mpg123:mpg123
    chromium
    chromium-driver
    prometheus:promtool
    nginx-light:/usr/sbin/nginx
    fakeroot:fakeroot
    systemd:systemd-analyze
)

log() { printf 'install-deps: %s\n' "$*"; }

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $* (run this script as root, or install sudo)" >&2
        return 1
    fi
}

# Like `dpkg -s`, but a package removed with its config files left counts as missing.
is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_system_packages() {
    if [[ "${SKYCAST_SKIP_APT:-0}" == 1 ]]; then
        log "SKYCAST_SKIP_APT=1: not checking system packages"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        log "not a Debian-like system (no dpkg/apt-get): install by hand: ${PACKAGES[*]%%:*}" >&2
        return 0
    fi
    local missing=() entry p cmd
    for entry in "${PACKAGES[@]}"; do
        p="${entry%%:*}"
        cmd=""
        [[ "$entry" == *:* ]] && cmd="${entry#*:}"
        if [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1; then
            continue
        fi
        is_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages present"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_cargo() {
    # rustup installs into ~/.cargo/bin, which a non-login shell may not have on PATH.
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        cat >&2 <<'EOF'
install-deps: `cargo` (Rust) was not found.
  Install the Rust toolchain with rustup, then open a new shell:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile default
    . "$HOME/.cargo/env"
  (Skycast needs Rust 1.80 or newer, with the rustfmt and clippy components:
    rustup component add rustfmt clippy)
EOF
        exit 1
    fi
    log "$(cargo --version)"
}

ensure_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        log "$(cargo nextest --version 2>/dev/null | head -n 1)"
        return 0
    fi
    log "cargo-nextest missing: cargo install cargo-nextest --locked"
    if cargo install cargo-nextest --locked; then
        log "$(cargo nextest --version 2>/dev/null | head -n 1)"
    else
        log "WARNING: could not install cargo-nextest; scripts/test.sh will use \`cargo test\`" >&2
    fi
}

# Mirror tests (tests/tests/mirror_garage.rs) run a 3-node Garage cluster on
# loopback. Garage (AGPL) runs only as separate `garage server` processes; nothing
# of it is linked into Skycast. Its build takes several minutes the first time.
ensure_garage() {
    if command -v garage >/dev/null 2>&1; then
        log "$(garage --version 2>/dev/null | head -n 1)"
        return 0
    fi
    log "garage missing: cargo install --locked garage"
    if cargo install --locked garage; then
        log "$(garage --version 2>/dev/null | head -n 1)"
    else
        log "could not install garage: the mirror tests (tests/tests/mirror_garage.rs) will fail until it is installed" >&2
        exit 1
    fi
}

# The Debian packages (scripts/package.sh, tests/tests/packaging.rs) are built by cargo-deb.
ensure_cargo_deb() {
    if cargo deb --version >/dev/null 2>&1; then
        log "$(cargo deb --version 2>/dev/null | head -n 1)"
        return 0
    fi
    log "cargo-deb missing: cargo install --locked cargo-deb"
    if cargo install --locked cargo-deb; then
        log "$(cargo deb --version 2>/dev/null | head -n 1)"
    else
        log "could not install cargo-deb: scripts/package.sh and the packaging test will fail until it is installed" >&2
        exit 1
    fi
}

install_system_packages
check_cargo
ensure_nextest
ensure_garage
ensure_cargo_deb
