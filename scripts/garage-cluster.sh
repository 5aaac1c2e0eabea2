#!/usr/bin/env bash
# A 3-node Garage cluster on loopback in 2 zones (dc1: nodes 0 and 1, dc2: node 2),
# replication factor 3, for the demo's mirror step: the same cluster as
# tests/src/garage.rs, started from the shell.
#
#   bash scripts/garage-cluster.sh start DIR    # start it in DIR (must not exist or be empty)
#   bash scripts/garage-cluster.sh stop DIR     # stop every node started in DIR
#
# `start` writes DIR/node{0,1,2}/garage.toml (0600: it holds the RPC secret) and
# each node's log, makes the bucket `skycast` with website access under the alias
# `localhost` (Garage takes a Host that is not under its root_domain as the bucket
# name, so players read http://localhost:<web port>/v1/head without credentials),
# a key allowed to read and write it, written as DIR/credentials.toml (0600,
# `access_key_id` / `secret_access_key`, what `mirror add --credentials` reads),
# and DIR/cluster.env, for `source`:
#   GARAGE_PIDS=(...)  GARAGE_S3=(http://127.0.0.1:P ...)  GARAGE_WEB=(http://localhost:P ...)
#   GARAGE_BUCKET  GARAGE_REGION  GARAGE_CREDENTIALS
# Every port is a free one on 127.0.0.1. The nodes keep running after `start`
# returns (their pids are in cluster.env); on a failure `start` stops them.
#
# Environment:
#   GARAGE_BIN       the garage binary (default: garage on PATH, else ~/.cargo/bin/garage)
#   GARAGE_TIMEOUT   seconds the cluster may take to become healthy (default 90)

set -euo pipefail

BUCKET=skycast
REGION=garage
WEB_ALIAS=localhost
ZONES=(dc1 dc1 dc2)

die() {
    printf 'garage-cluster.sh: %s\n' "$*" >&2
    exit 1
}

garage_bin() {
    if [[ -n "${GARAGE_BIN:-}" ]]; then
        echo "$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/garage"
    else
        die "garage is not installed: run scripts/install-deps.sh (it runs \`cargo install --locked garage\`)"
    fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# g NODE ARGS...: the garage CLI against node NODE (quiet logs).
g() {
    local node="$1"
    shift
    RUST_LOG=warn "$GARAGE" -c "$DIR/node$node/garage.toml" "$@"
}

stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && return 0
        sleep 0.1
    done
    for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# until_ok WHAT NODE CMD...: runs CMD until it succeeds, failing with node NODE's
# log after the deadline.
until_ok() {
    local what="$1" node="$2"
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        if ((SECONDS > DEADLINE)); then
            echo "--- last lines of $DIR/node$node/garage.log ---" >&2
            tail -n 20 "$DIR/node$node/garage.log" >&2 || true
            die "$what did not happen within ${TIMEOUT}s"
        fi
        sleep 0.2
    done
}

healthy() { curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:${ADMIN[$1]}/health"; }

start() {
    [[ ! -e "$DIR" || -z "$(ls -A "$DIR")" ]] || die "$DIR is not empty: give a new directory"
    GARAGE="$(garage_bin)"
    TIMEOUT="${GARAGE_TIMEOUT:-90}"
    DEADLINE=$((SECONDS + TIMEOUT))
    mkdir -p "$DIR"
    local secret i rpc s3 web admin
    secret="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    PIDS=() S3=() WEB=() ADMIN=()
    # Any failure below (die included) stops what was started.
    trap 'stop_pids "${PIDS[@]}"' EXIT
    for i in 0 1 2; do
        mkdir -p "$DIR/node$i/meta" "$DIR/node$i/data"
        rpc="$(free_port)" s3="$(free_port)" web="$(free_port)" admin="$(free_port)"
        (umask 077 && cat >"$DIR/node$i/garage.toml" <<EOF)
metadata_dir = "$DIR/node$i/meta"
data_dir = "$DIR/node$i/data"
db_engine = "sqlite"
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
api_bind_addr = "127.0.0.1:$s3"
s3_region = "$REGION"
root_domain = ".s3.garage.test"

[s3_web]
bind_addr = "127.0.0.1:$web"
root_domain = ".web.garage.test"
index = "index.html"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
        RUST_LOG=garage=info "$GARAGE" -c "$DIR/node$i/garage.toml" server \
            </dev/null >>"$DIR/node$i/garage.log" 2>&1 &
        PIDS+=("$!")
        S3+=("http://127.0.0.1:$s3")
        WEB+=("http://$WEB_ALIAS:$web")
        ADMIN+=("$admin")
    done
    local ids=()
    for i in 0 1 2; do
        until_ok "node $i answering \`node id\`" "$i" g "$i" node id -q
        ids+=("$(g "$i" node id -q | tr -d '[:space:]')")
    done
    for i in 1 2; do g 0 node connect "${ids[$i]}" >/dev/null; done
    for i in 0 1 2; do
        # `node id -q` prints <id>@<addr>; the layout wants the id alone.
        g 0 layout assign -z "${ZONES[$i]}" -c 1G "${ids[$i]%%@*}" >/dev/null
    done
    g 0 layout apply --version 1 >/dev/null
    for i in 0 1 2; do until_ok "node $i healthy" "$i" healthy "$i"; done
    g 0 bucket create "$BUCKET" >/dev/null
    local created key_id key_secret
    created="$(g 0 key create skycast-publisher)"
    key_id="$(sed -n 's/^ *Key ID: *//Ip' <<<"$created" | head -n 1 | tr -d '[:space:]')"
    key_secret="$(sed -n 's/^ *Secret key: *//Ip' <<<"$created" | head -n 1 | tr -d '[:space:]')"
    [[ -n "$key_id" && -n "$key_secret" ]] || die "\`garage key create\` printed no Key ID or Secret key"
    g 0 bucket allow --read --write --owner "$BUCKET" --key "$key_id" >/dev/null
    g 0 bucket website --allow "$BUCKET" >/dev/null
    g 0 bucket alias "$BUCKET" "$WEB_ALIAS" >/dev/null
    (umask 077 && printf 'access_key_id = "%s"\nsecret_access_key = "%s"\n' "$key_id" "$key_secret" >"$DIR/credentials.toml")
    {
        echo "GARAGE_PIDS=(${PIDS[*]})"
        echo "GARAGE_S3=(${S3[*]})"
        echo "GARAGE_WEB=(${WEB[*]})"
        echo "GARAGE_BUCKET=$BUCKET"
        echo "GARAGE_REGION=$REGION"
        echo "GARAGE_CREDENTIALS=$DIR/credentials.toml"
    } >"$DIR/cluster.env"
    trap - EXIT
}

stop() {
    [[ -f "$DIR/cluster.env" ]] || die "$DIR/cluster.env is missing: no cluster was started there"
    # shellcheck disable=SC1091 # written by `start`
    source "$DIR/cluster.env"
    stop_pids "${GARAGE_PIDS[@]}"
}

[[ $# -eq 2 ]] || die "usage: garage-cluster.sh start|stop DIR"
mkdir -p "$(dirname "$2")"
DIR="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
case "$1" in
    start) start ;;
    stop) stop ;;
    *) die "unknown command \`$1\`: start or stop" ;;
esac
