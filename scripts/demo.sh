#!/usr/bin/env bash
# The one command for the demo: a publisher and three shop players (main, lille,
# nantes) on this machine, over real HTTPS on loopback.
#
#   bash scripts/demo.sh [--keep-running] [--release] [--speaker]
#
# 1. init a publisher data directory (prints the generated admin password unless
#    SKYCAST_ADMIN_PASSWORD is set), 2. serve it on a free 127.0.0.1 port,
# 3. register one player per shop and start its puller, 4. publish
# content-example/planning.yaml and time how long until every player runs v1,
# 5. publish planning-v2.yaml (one more track) and show that each player
# downloaded only that track, 6. show history, diff 1 2 and verify, 7. sign in
# to the web UI as sales and play an ad now in shop main (version 3), 8. show
# what each shop plays (the players follow the planning from their local copy),
# 9. supervision: the fleet dashboard with the three shops, a webhook to a tiny
# local receiver (scripts/webhook-receiver.py), kill -9 of lille's player: KO and
# the "unreachable" alert and its signed webhook; restart: the alert resolved,
# 10. mirrors and a second site (skipped when `garage` is not installed): a
# 3-node Garage cluster (scripts/garage-cluster.sh), `mirror add`, shop main's
# media from Garage, a second site (`follow` fed by `git daemon`), main fails
# over to it when the primary's serve stops and returns when it is back, and
# `publish` refused on the second site.
#
# Options:
#   --keep-running   leave publisher and pullers running until Ctrl-C
#   --release        build and run release binaries instead of debug
#   --speaker        shop `main` plays on this machine's sound device (the other
#                    two, and all three by default, play to the clocked `null` output)
# Environment:
#   SKYCAST_DEMO_DIR       where all demo state goes (default ./demo-data,
#                          wiped at start; only a directory made by this script
#                          or an empty one is ever wiped)
#   SKYCAST_ADMIN_PASSWORD passed through to `skycast-publisher init`
#   SKYCAST_DEMO_PASSWORD  password of the web UI users marketing, commercial and
#                          auditor (default skycast-demo)
#   SKYCAST_DEMO_TIMEOUT   seconds to wait for each sync, alert or resolve (default 60)
#   SKYCAST_SKIP_APT=1     passed on to install-deps.sh
#   SKYCAST_DEMO_CLOCK     the instant the players' clocks start at (default
#                          2026-12-05T10:29:40+01:00: a Saturday in the Christmas
#                          campaign, 20 s before the remote shops' 10:30 ad);
#                          `system` uses the real clock

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KEEP_RUNNING=0
PROFILE=debug
SPEAKER=0
for arg in "$@"; do
    case "$arg" in
        --keep-running) KEEP_RUNNING=1 ;;
        --release) PROFILE=release ;;
        --speaker) SPEAKER=1 ;;
        -h | --help)
            sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "demo.sh: unknown argument \`$arg\` (try --help)" >&2
            exit 2
            ;;
    esac
done

SHOPS=(main lille nantes)
TIMEOUT="${SKYCAST_DEMO_TIMEOUT:-60}"
CLOCK="${SKYCAST_DEMO_CLOCK:-2026-12-05T10:29:40+01:00}"
MARKER=".skycast-demo"
# Supervision, quick for the demo: each puller reports every 2 s (the default is
# 10) and the publisher calls a player KO after 6 s without a report (default 30).
REPORT_INTERVAL=2
OFFLINE_AFTER=6

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}
now() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then echo "${EPOCHREALTIME/,/.}"; else date +%s; fi
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# jget JSON PATH: a value from JSON (PATH like .a.b), empty when absent or null.
jget() {
    if command -v jq >/dev/null 2>&1; then
        jq -r "$2 // empty" <<<"$1" 2>/dev/null || true
    else
        python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
    for k in [k for k in sys.argv[1].split(".") if k]:
        v = v[k]
    if v is not None:
        print(v)
except Exception:
    pass
' "$2" <<<"$1"
    fi
}

# ---------------------------------------------------------------- build
say "Dependencies and build ($PROFILE)"
bash "$ROOT/scripts/install-deps.sh"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if [[ "$PROFILE" == release ]]; then
    cargo build --workspace --bins --release
else
    cargo build --workspace --bins
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
PUB="$BIN/skycast-publisher"
PULL="$BIN/skycast-puller"
[[ -x "$PUB" ]] || die "$PUB was not built"
[[ -x "$PULL" ]] || die "$PULL was not built"

# ---------------------------------------------------------------- demo directory
D="${SKYCAST_DEMO_DIR:-$ROOT/demo-data}"
mkdir -p "$D"
D="$(cd "$D" && pwd)"
case "$D" in
    / | "$HOME" | "$ROOT" | "$ROOT/content-example") die "refusing to use $D as the demo directory" ;;
esac
if [[ -n "$(ls -A "$D")" && ! -e "$D/$MARKER" ]]; then
    die "$D is not empty and was not made by demo.sh ($MARKER missing): choose another SKYCAST_DEMO_DIR"
fi
find "$D" -mindepth 1 -delete
touch "$D/$MARKER"
mkdir -p "$D/players" "$D/logs"
echo "demo directory: $D"

# ---------------------------------------------------------------- processes
PIDS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    if [[ ${#PIDS[@]} -gt 0 ]]; then
        echo
        echo "stopping ${#PIDS[@]} background process(es)"
        for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for _ in $(seq 1 50); do
            local alive=0
            for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [[ $alive -eq 0 ]] && break
            sleep 0.1
        done
        for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# alive PID LOG: fail with the log's tail when a background process has died.
alive() {
    if ! kill -0 "$1" 2>/dev/null; then
        echo "--- last lines of $2 ---" >&2
        tail -n 30 "$2" >&2 || true
        die "process $1 exited early (log: $2)"
    fi
}

# ---------------------------------------------------------------- 1. init
say "1. Initialise the publisher"
"$PUB" init --data "$D/publisher" 2>&1 | tee "$D/logs/init.log"
CA="$D/publisher/tls/ca.pem"
[[ -f "$CA" ]] || die "init did not write $CA"
# One web UI user per role besides the admin, all with the same demo password.
DEMO_PASSWORD="${SKYCAST_DEMO_PASSWORD:-skycast-demo}"
for role in marketing commercial auditor; do
    SKYCAST_USER_PASSWORD="$DEMO_PASSWORD" "$PUB" user add --data "$D/publisher" --name "$role" --role "$role"
done

# ---------------------------------------------------------------- 2. serve
say "2. Serve the store over HTTPS"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT="$(free_port)"
URL="https://127.0.0.1:$PORT"
METRICS_PORT="$(free_port)"
# start_publisher: `serve` in the background (appending to its log); step 10
# stops it and starts it again the same way, on the same port.
start_publisher() {
    "$PUB" serve --data "$D/publisher" --listen "127.0.0.1:$PORT" \
        --offline-after "$OFFLINE_AFTER" --metrics-listen "127.0.0.1:$METRICS_PORT" >>"$D/logs/publisher.log" 2>&1 &
    PUB_PID=$!
    PIDS+=("$PUB_PID")
}
# wait_publisher: until serve answers on /v1/head (its HTTP code in $code).
wait_publisher() {
    local t0
    t0="$(now)"
    while :; do
        alive "$PUB_PID" "$D/logs/publisher.log"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CA" "$URL/v1/head" || true)"
        # No token: 401 means the server is up and answers over TLS with our CA.
        if [[ "$code" == 401 || "$code" == 200 ]]; then break; fi
        if awk -v a="$t0" -v b="$(now)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            tail -n 30 "$D/logs/publisher.log" >&2 || true
            die "publisher did not answer on $URL/v1/head within ${TIMEOUT}s (last HTTP code: ${code:-none})"
        fi
        sleep 0.2
    done
}
start_publisher
t0="$(now)"
wait_publisher
echo "publisher up at $URL (pid $PUB_PID, ${code} on /v1/head without a token, $(elapsed "$t0")s)"
echo "a player is KO after ${OFFLINE_AFTER}s without a report (--offline-after); Prometheus metrics at http://127.0.0.1:$METRICS_PORT/metrics"

# ---------------------------------------------------------------- 3. players
say "3. Register one player per shop and start the pullers"
declare -A PULL_PID=()
# start_puller SHOP: starts the shop's puller in the background (appending to its
# log) and records its pid; step 9 restarts a killed one with it, the same way.
start_puller() {
    local shop="$1" id="$1-1" output=null clock=() pid
    [[ $SPEAKER -eq 1 && "$shop" == main ]] && output=speaker
    [[ "$CLOCK" != system ]] && clock=(--clock-start "$CLOCK")
    "$PULL" run --config "$D/players/$id.toml" --output "$output" "${clock[@]}" >>"$D/logs/$id.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    PULL_PID[$shop]=$pid
    echo "player $id (shop $shop): output $output, config $D/players/$id.toml, pid $pid, log $D/logs/$id.log"
}
for shop in "${SHOPS[@]}"; do
    id="$shop-1"
    "$PUB" player add --data "$D/publisher" --id "$id" --shop "$shop" \
        --server-url "$URL" --player-data "$D/players/$id" >"$D/players/$id.toml"
    # The config `player add` wrote has no [table], so a key appended is top-level.
    printf 'report_interval_secs = %s\n' "$REPORT_INTERVAL" >>"$D/players/$id.toml"
    start_puller "$shop"
done

status_json() { "$PULL" status --config "$D/players/$1.toml" 2>/dev/null || true; }

table() {
    printf '%-8s %-10s %-15s %-11s %s\n' shop player active_version media_count media_bytes
    local shop id s
    for shop in "${SHOPS[@]}"; do
        id="$shop-1"
        s="$(status_json "$id")"
        printf '%-8s %-10s %-15s %-11s %s\n' "$shop" "$id" "$(jget "$s" .active_version)" \
            "$(jget "$s" .media_count)" "$(jget "$s" .media_bytes)"
    done
}

# wait_version N: until every player reports active_version N; prints the seconds.
wait_version() {
    local want="$1" t0 shop id v done_all
    t0="$(now)"
    while :; do
        done_all=1
        for shop in "${SHOPS[@]}"; do
            id="$shop-1"
            alive "${PULL_PID[$shop]}" "$D/logs/$id.log"
            v="$(jget "$(status_json "$id")" .active_version)"
            [[ "$v" == "$want" ]] || done_all=0
        done
        [[ $done_all -eq 1 ]] && break
        if awk -v a="$t0" -v b="$(now)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then
            table >&2
            die "not every player reached version $want within ${TIMEOUT}s (logs in $D/logs/)"
        fi
        sleep 0.2
    done
    SYNC_SECS="$(elapsed "$t0")"
}

# ---------------------------------------------------------------- 4. publish v1
say "4. Publish content-example/planning.yaml (version 1)"
t_pub="$(now)"
"$PUB" publish --data "$D/publisher" --planning "$ROOT/content-example/planning.yaml" \
    --author demo --message "Pilot planning"
PUB_SECS="$(elapsed "$t_pub")"
wait_version 1
echo
echo "publish took ${PUB_SECS}s; all ${#SHOPS[@]} players on version 1 ${SYNC_SECS}s later ($(elapsed "$t_pub")s from the start of publish)"
table

# ---------------------------------------------------------------- 5. publish v2
say "5. Publish content-example/planning-v2.yaml (version 2: one more track)"
t_pub="$(now)"
"$PUB" publish --data "$D/publisher" --planning "$ROOT/content-example/planning-v2.yaml" \
    --author demo --message "Add one track"
PUB_SECS="$(elapsed "$t_pub")"
wait_version 2
echo
echo "publish took ${PUB_SECS}s; all ${#SHOPS[@]} players on version 2 ${SYNC_SECS}s later ($(elapsed "$t_pub")s from the start of publish)"
table
NEW_TRACK="$ROOT/content-example/music/extra-e.mp3"
NEW_BYTES="$(stat -c %s "$NEW_TRACK")"
echo
printf '%-10s %s\n' player "last_sync.downloaded_bytes (the new track, music/extra-e.mp3, is $NEW_BYTES bytes)"
for shop in "${SHOPS[@]}"; do
    id="$shop-1"
    got="$(jget "$(status_json "$id")" .last_sync.downloaded_bytes)"
    note=""
    if [[ -n "$got" && "$got" == "$NEW_BYTES" ]]; then note="  (just the new track)"; fi
    printf '%-10s %s%s\n' "$id" "${got:-?}" "$note"
done

# ---------------------------------------------------------------- 6. audit
say "6. History, diff 1 2, verify"
echo "\$ skycast-publisher history"
"$PUB" history --data "$D/publisher"
echo
echo "\$ skycast-publisher diff 1 2"
"$PUB" diff --data "$D/publisher" 1 2
echo
echo "\$ skycast-publisher verify"
"$PUB" verify --data "$D/publisher"

# ---------------------------------------------------------------- 7. web UI
say "7. The web UI: sales sign in and play an ad now in shop main (version 3)"
JAR="$D/logs/web-cookies.txt"
# web_get PATH: the page body (saved to $D/logs/web-page.html) and its time on stderr.
web_get() {
    curl -s --cacert "$CA" -b "$JAR" -c "$JAR" -H 'Accept-Language: fr-FR,fr;q=0.9' \
        -o "$D/logs/web-page.html" -w '%{http_code} %{time_total}' "$URL$1"
}
# page_csrf: the CSRF token of the last page fetched.
page_csrf() { grep -o 'name="csrf" value="[^"]*"' "$D/logs/web-page.html" | head -n 1 | sed 's/.*value="//; s/"$//'; }
read -r code secs <<<"$(web_get /login)"
echo "GET /login: HTTP $code in ${secs}s (French, from Accept-Language: $(grep -o '<h1>[^<]*</h1>' "$D/logs/web-page.html" | head -n 1))"
code="$(curl -s --cacert "$CA" -b "$JAR" -c "$JAR" -o /dev/null -w '%{http_code} -> %{redirect_url}' \
    --data-urlencode "username=commercial" --data-urlencode "password=$DEMO_PASSWORD" \
    --data-urlencode "csrf=$(page_csrf)" "$URL/login")"
echo "POST /login as commercial: $code"
read -r code secs <<<"$(web_get /commercial)"
echo "GET /commercial: HTTP $code in ${secs}s"
AD_ID="$(python3 -c '
import re, sys
page = open(sys.argv[1], encoding="utf-8").read()
select = re.search(r"<select[^>]*id=\"play-now-media\".*?</select>", page, re.S)
options = re.findall(r"<option[^>]*value=\"([0-9a-f]{64})\"[^>]*>([^<]*)<", select.group(0) if select else "")
# An ad (publicité) rather than an announcement, when the library has one.
ads = [v for v, label in options if "publicit" in label] or [v for v, _ in options]
print(ads[0] if ads else "")
' "$D/logs/web-page.html")"
[[ -n "$AD_ID" ]] || die "the play-now form lists no ad (page in $D/logs/web-page.html)"
t_pub="$(now)"
code="$(curl -s --cacert "$CA" -b "$JAR" -c "$JAR" -o /dev/null -w '%{http_code}' \
    --data-urlencode "media=$AD_ID" --data-urlencode "shops=main" --data-urlencode "start=cut" \
    --data-urlencode "after=resume" --data-urlencode "message=Demo: play now" \
    --data-urlencode "csrf=$(page_csrf)" "$URL/commercial/play-now")"
[[ "$code" == 303 ]] || die "play-now answered HTTP $code (see $D/logs/publisher.log)"
wait_version 3
echo "play-now published version 3; all ${#SHOPS[@]} players on it $(elapsed "$t_pub")s after the click"
"$PUB" history --data "$D/publisher" | head -n 3
read -r code secs <<<"$(web_get "/commercial/calendar?shop=main")"
[[ "$code" == 200 ]] || die "the sales calendar answered HTTP $code (see $D/logs/publisher.log)"
echo "GET /commercial/calendar: HTTP $code in ${secs}s: this week in shop main, $(grep -c 'data-test="block"' "$D/logs/web-page.html") music blocks and $(grep -c 'data-test="pin"' "$D/logs/web-page.html") planned messages drawn by the resolver"
echo "(the players' demo clock is in December, so this real-time ad's one-hour window has passed for them;"
echo " with SKYCAST_DEMO_CLOCK=system, an open shop main cuts the music for it within a second)"

# ---------------------------------------------------------------- 8. playback
say "8. What the shops play (clock from ${CLOCK}; one line per thing that starts)"
# The remote shops' 10:30 ad is due 20 s after the default clock start; it waits
# for the end of the track playing then (boundary mode).
sleep "${SKYCAST_DEMO_LISTEN_SECS:-45}"
for shop in "${SHOPS[@]}"; do
    id="$shop-1"
    echo "--- $id"
    grep -E '▶|■|⇄|^!' "$D/logs/$id.log" | tail -n 8 || echo "(nothing played yet)"
done
echo
echo "play log of main-1 (state.sqlite), now playing:"
jget "$(status_json main-1)" .now_playing.title

# ---------------------------------------------------------------- 9. supervision
say "9. Supervision: the fleet, one shop falls silent (kill -9), its alert and webhook, then back"
# past_deadline T0: true once more than $TIMEOUT seconds have passed since T0.
past_deadline() { awk -v a="$1" -v b="$(now)" -v t="$TIMEOUT" 'BEGIN { exit !(b - a > t) }'; }
# tabs: a tab-separated table aligned in columns (as is without `column`).
tabs() { if command -v column >/dev/null 2>&1; then column -t -s $'\t'; else cat; fi; }
# fleet_table: `fleet` with its table aligned under its first line (the head version).
fleet_table() { fleet_cmd | { IFS= read -r line && echo "$line" && tabs; }; }
fleet_cmd() { "$PUB" fleet --data "$D/publisher" --offline-after "$OFFLINE_AFTER" "$@"; }
fleet_json() { fleet_cmd --json 2>/dev/null || true; }
alerts_json() { "$PUB" alerts --data "$D/publisher" --json "$@" 2>/dev/null || true; }
# pyj CODE [ARG...]: runs Python CODE with the JSON on stdin as `d` (None when it
# does not parse) and the ARGs as sys.argv[2:]; CODE prints what the caller
# wants. For the few questions jget cannot ask.
pyj() {
    python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    d = None
exec(sys.argv[1])
' "$@"
}
# fleet_ok: every shop UP, in sync and playing a track, or with a reason not to
# that waiting will not fix (its shop closed, its sound device missing or failed:
# --speaker on a machine without one); prints a line per such player.
fleet_ok() {
    fleet_json | pyj '
ps = (d or {}).get("players") or []
def settled(p):
    return p.get("now_playing") or p["activity"] == "closed" or p["output"] in ("no_device", "error")
if len(ps) != int(sys.argv[2]) or not all(p["up"] and p["in_sync"] and settled(p) for p in ps):
    sys.exit(1)
for p in ps:
    if not p.get("now_playing"):
        print("note: %s plays nothing (%s, output %s%s)" % (p["id"], p["activity"], p["output"],
              ": " + p["last_error"] if p.get("last_error") else ""))' "${#SHOPS[@]}"
}
# player_up ID: prints true or false (empty when the fleet cannot be read).
player_up() {
    fleet_json | pyj '
for p in (d or {}).get("players") or []:
    if p["id"] == sys.argv[2]:
        print("true" if p["up"] else "false")' "$1"
}
# open_alert KIND PLAYER: the id of that open alert, empty when there is none.
open_alert() {
    alerts_json | pyj '
ids = [a["id"] for a in d or [] if a["kind"] == sys.argv[2] and a["player_id"] == sys.argv[3]]
print(ids[0] if ids else "")' "$1" "$2"
}
# resolved_alert ID: prints the resolve time of alert ID once it is resolved.
resolved_alert() {
    alerts_json --all | pyj '
for a in d or []:
    if a["id"] == int(sys.argv[2]) and a.get("resolved_at"):
        print(a["resolved_at"])' "$1"
}
HOOK_LOG="$D/logs/webhooks.log"
# hook_got EVENT KIND PLAYER: true once the receiver logged that delivery; dies if
# its signature did not check out.
hook_got() {
    local line
    line="$(grep -F " $1 kind=$2 player=$3 " "$HOOK_LOG" | head -n 1 || true)"
    [[ -n "$line" ]] || return 1
    [[ "$line" == *" signature=valid" ]] || die "the receiver got $1 for $3 with a bad signature: $line"
}

# The receiver: plain HTTP on loopback (the only place http webhooks may go).
# It reads the secret from this file, written below and never printed.
SECRET_FILE="$D/webhook.secret"
(umask 077 && : >"$SECRET_FILE")
SKYCAST_WEBHOOK_SECRET_FILE="$SECRET_FILE" python3 "$ROOT/scripts/webhook-receiver.py" \
    --port-file "$D/logs/webhook-receiver.port" 127.0.0.1 0 >"$HOOK_LOG" 2>&1 &
RECV_PID=$!
PIDS+=("$RECV_PID")
t0="$(now)"
until [[ -s "$D/logs/webhook-receiver.port" ]]; do
    alive "$RECV_PID" "$HOOK_LOG"
    past_deadline "$t0" && die "the webhook receiver did not start within ${TIMEOUT}s (log: $HOOK_LOG)"
    sleep 0.1
done
HOOK_URL="http://127.0.0.1:$(cat "$D/logs/webhook-receiver.port")/skycast"
echo "webhook receiver (scripts/webhook-receiver.py) at $HOOK_URL, pid $RECV_PID, log $HOOK_LOG"
echo
echo "\$ skycast-publisher webhook add --url $HOOK_URL"
add_out="$("$PUB" webhook add --data "$D/publisher" --url "$HOOK_URL" 2>"$D/logs/webhook-add.err")" ||
    { cat "$D/logs/webhook-add.err" >&2; die "webhook add failed"; }
hook_secret="$(sed -n 's/^secret (shown once, store it now): //p' <<<"$add_out")"
[[ "$hook_secret" == skw_* ]] || die "webhook add printed no skw_ secret"
printf '%s\n' "$hook_secret" >"$SECRET_FILE"
echo "${add_out//"$hook_secret"/skw_… (not shown here: handed to the receiver in $SECRET_FILE)}"
unset hook_secret add_out
grep -v 'INFO' "$D/logs/webhook-add.err" || true
"$PUB" webhook list --data "$D/publisher"

t0="$(now)"
until notes="$(fleet_ok)"; do
    alive "$PUB_PID" "$D/logs/publisher.log"
    if past_deadline "$t0"; then
        fleet_table >&2 || true
        die "the fleet did not show all ${#SHOPS[@]} shops UP, in sync and playing within ${TIMEOUT}s"
    fi
    sleep 0.2
done
echo
echo "\$ skycast-publisher fleet --offline-after $OFFLINE_AFTER    (every player reports every ${REPORT_INTERVAL}s)"
fleet_table
[[ -z "$notes" ]] || echo "$notes"
echo
echo "\$ curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep '^skycast_players'"
curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | grep '^skycast_players' || echo "(no skycast_players series)"

VICTIM=lille
VID="$VICTIM-1"
echo
echo "kill -9 of the puller of shop $VICTIM (pid ${PULL_PID[$VICTIM]}) ..."
t_kill="$(now)"
kill -KILL "${PULL_PID[$VICTIM]}"
wait "${PULL_PID[$VICTIM]}" 2>/dev/null || true
keep=()
for pid in "${PIDS[@]}"; do [[ "$pid" == "${PULL_PID[$VICTIM]}" ]] || keep+=("$pid"); done
PIDS=("${keep[@]}")
ko_secs="" alert_id="" alert_secs="" hook_secs=""
until [[ -n "$ko_secs" && -n "$alert_id" && -n "$hook_secs" ]]; do
    alive "$PUB_PID" "$D/logs/publisher.log"
    alive "$RECV_PID" "$HOOK_LOG"
    [[ -z "$ko_secs" && "$(player_up "$VID")" == false ]] && ko_secs="$(elapsed "$t_kill")"
    if [[ -z "$alert_id" ]]; then
        alert_id="$(open_alert unreachable "$VID")"
        [[ -n "$alert_id" ]] && alert_secs="$(elapsed "$t_kill")"
    fi
    [[ -z "$hook_secs" ]] && hook_got alert.opened unreachable "$VID" && hook_secs="$(elapsed "$t_kill")"
    if past_deadline "$t_kill"; then
        fleet_table >&2 || true
        die "${TIMEOUT}s after kill -9 of $VID: KO after ${ko_secs:-never}s, unreachable alert ${alert_id:+#$alert_id }after ${alert_secs:-never}s, webhook after ${hook_secs:-never}s (logs in $D/logs/)"
    fi
    sleep 0.2
done
echo "$VID KO after ${ko_secs}s, unreachable alert #$alert_id open after ${alert_secs}s, its webhook received after ${hook_secs}s"
echo "(a player is KO after ${OFFLINE_AFTER}s without a report; it reported every ${REPORT_INTERVAL}s)"
echo
echo "\$ skycast-publisher fleet --offline-after $OFFLINE_AFTER"
fleet_table
echo
echo "\$ skycast-publisher alerts"
"$PUB" alerts --data "$D/publisher" | tabs
echo
echo "\$ curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep -E '^skycast_(players|alerts_open\\{kind=\"unreachable\")'"
curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^skycast_(players|alerts_open\{kind="unreachable")' ||
    echo "(no such series)"
echo
echo "the receiver got ($HOOK_LOG):"
grep -A1 -F " player=$VID " "$HOOK_LOG" | grep -v '^--$'

echo
echo "restarting the puller of shop $VICTIM as before ..."
t_back="$(now)"
start_puller "$VICTIM"
up_secs="" resolved_at="" resolve_secs="" hook_secs=""
until [[ -n "$up_secs" && -n "$resolve_secs" && -n "$hook_secs" ]]; do
    alive "$PUB_PID" "$D/logs/publisher.log"
    alive "$RECV_PID" "$HOOK_LOG"
    alive "${PULL_PID[$VICTIM]}" "$D/logs/$VID.log"
    [[ -z "$up_secs" && "$(player_up "$VID")" == true ]] && up_secs="$(elapsed "$t_back")"
    if [[ -z "$resolve_secs" ]]; then
        resolved_at="$(resolved_alert "$alert_id")"
        [[ -n "$resolved_at" ]] && resolve_secs="$(elapsed "$t_back")"
    fi
    [[ -z "$hook_secs" ]] && hook_got alert.resolved unreachable "$VID" && hook_secs="$(elapsed "$t_back")"
    if past_deadline "$t_back"; then
        fleet_table >&2 || true
        die "${TIMEOUT}s after restarting $VID: UP after ${up_secs:-never}s, alert #$alert_id resolved after ${resolve_secs:-never}s, resolved webhook after ${hook_secs:-never}s (logs in $D/logs/)"
    fi
    sleep 0.2
done
echo "$VID UP again ${up_secs}s after the restart; alert #$alert_id resolved after ${resolve_secs}s (10 s hold-down after its first report), its webhook received after ${hook_secs}s"
echo
echo "\$ skycast-publisher alerts --all"
"$PUB" alerts --data "$D/publisher" --all | tabs
echo
echo "the receiver got, in all ($HOOK_LOG):"
cat "$HOOK_LOG"
opened="$(grep -cF " alert.opened kind=unreachable player=$VID " "$HOOK_LOG" || true)"
resolved="$(grep -cF " alert.resolved kind=unreachable player=$VID " "$HOOK_LOG" || true)"
echo "for $VID: $opened alert.opened and $resolved alert.resolved (one of each is expected)"
echo
# The same as the auditor would see it (read-only; the admin's password is init's).
JAR="$D/logs/web-cookies-auditor.txt"
read -r code secs <<<"$(web_get /login)"
code="$(curl -s --cacert "$CA" -b "$JAR" -c "$JAR" -o /dev/null -w '%{http_code}' \
    --data-urlencode "username=auditor" --data-urlencode "password=$DEMO_PASSWORD" \
    --data-urlencode "csrf=$(page_csrf)" "$URL/login")"
[[ "$code" == 303 ]] || die "auditor sign-in answered HTTP $code (see $D/logs/publisher.log)"
read -r code secs <<<"$(web_get /fleet)"
rows="$(grep -c 'data-test="fleet-row"' "$D/logs/web-page.html" || true)"
if [[ "$code" == 200 ]]; then
    echo "GET /fleet as auditor: HTTP $code in ${secs}s, $rows player rows"
else
    echo "!! GET /fleet as auditor: HTTP $code in ${secs}s: the dashboard page does not render (see $D/logs/publisher.log)" >&2
fi
read -r code secs <<<"$(web_get /api/fleet)"
echo "GET /api/fleet as auditor: HTTP $code in ${secs}s, $(pyj 'print(len((d or {}).get("players") or []))' <"$D/logs/web-page.html") players"
echo
echo "the dashboard: $URL/fleet (sign in as admin; auditor sees it read-only), JSON at $URL/api/fleet"

# ---------------------------------------------------------------- 10. mirrors and a second site
say "10. Mirrors on a real Garage cluster, and a second site"
S10="$D/step10"
STEP10=0
# stop_process PID: TERM, KILL after 10 s, and the pid forgotten by the cleanup.
stop_process() {
    local pid="$1" keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
# quiet LOG CMD...: runs CMD with its stderr in LOG, shown without INFO lines;
# fails with the whole of LOG when CMD fails.
quiet() {
    local log="$1"
    shift
    if "$@" 2>"$log"; then
        grep -v ' INFO ' "$log" || true
    else
        cat "$log" >&2
        return 1
    fi
}
mirror_json() { "$PUB" mirror status --data "$D/publisher" --json 2>/dev/null || true; }
# wait_mirrored N: until the mirror holds version N with nothing left to copy;
# the seconds it took in $MIRROR_SECS.
wait_mirrored() {
    local want="$1" t0
    t0="$(now)"
    until [[ "$(mirror_json | pyj '
m = ((d or {}).get("mirrors") or [{}])[0]
print(m.get("mirrored_version") == int(sys.argv[2]) and m.get("versions_behind") == 0 and m.get("queue_len") == 0)' "$want")" == True ]]; do
        alive "$PUB_PID" "$D/logs/publisher.log"
        if past_deadline "$t0"; then
            "$PUB" mirror status --data "$D/publisher" >&2 || true
            die "the mirror did not hold version $want within ${TIMEOUT}s (log: $D/logs/publisher.log)"
        fi
        sleep 0.2
    done
    MIRROR_SECS="$(elapsed "$t0")"
}
# wait_main WHAT PYTHON-CONDITION: polls main-1's `status --json` (as `d`) until
# the condition holds; the status then in $MAIN_STATUS, the seconds in $MAIN_SECS.
wait_main() {
    local what="$1" cond="$2" t0
    t0="$(now)"
    while :; do
        alive "${PULL_PID[main]}" "$D/logs/main-1.log"
        MAIN_STATUS="$(status_json main-1)"
        [[ "$(pyj "print(bool(d and ($cond)))" <<<"$MAIN_STATUS")" == True ]] && break
        if past_deadline "$t0"; then
            echo "$MAIN_STATUS" >&2
            die "main-1: $what did not happen within ${TIMEOUT}s (log: $D/logs/main-1.log)"
        fi
        sleep 0.2
    done
    MAIN_SECS="$(elapsed "$t0")"
}
# served_by: the sources of main-1's last sync, from $MAIN_STATUS.
served_by() {
    local filter='.last_sync.served_by | "  head      from \(.head)", "  manifest  from \(.manifest // "-")",
        (.media[] | "  media     \(.count) file(s), \(.bytes) bytes from \(.url)"),
        (.refused[] | "  refused   \(.url): \(.error)")'
    if command -v jq >/dev/null 2>&1; then
        echo "who served main-1's last sync (skycast-puller status --config $D/players/main-1.toml | jq .last_sync.served_by):"
        jq -r "$filter" <<<"$MAIN_STATUS"
    else
        pyj 'print(json.dumps(d["last_sync"]["served_by"], indent=2))' <<<"$MAIN_STATUS"
    fi
}
# published_version OUTPUT: N from publish's "published version N (...)".
published_version() { sed -n 's/^published version \([0-9]*\) .*/\1/p' <<<"$1"; }

mirrors_and_second_site() {
    local t0 i out v4 v5 head_v zones=(dc1 dc1 dc2)
    STEP10=1
    mkdir -p "$S10"
    echo "A mirror is S3-compatible object storage that \`serve\` copies every signed version to."
    echo "Players take media from it first, over plain HTTP here: they check every byte against"
    echo "the signed manifest, so a mirror needs no trust, only to be there."
    echo
    echo "(a) Garage: 3 nodes on loopback in 2 zones (dc1: nodes 0 and 1, dc2: node 2), each object on all 3"
    t0="$(now)"
    GARAGE_BIN="$GARAGE_BIN" GARAGE_TIMEOUT="$((TIMEOUT > 90 ? TIMEOUT : 90))" \
        bash "$ROOT/scripts/garage-cluster.sh" start "$S10/garage" ||
        die "the Garage cluster did not start (logs: $S10/garage/node*/garage.log)"
    # shellcheck disable=SC1091 # written by garage-cluster.sh
    source "$S10/garage/cluster.env"
    PIDS+=("${GARAGE_PIDS[@]}")
    echo "cluster healthy $(elapsed "$t0")s later (scripts/garage-cluster.sh): bucket \`$GARAGE_BUCKET\`, a key for it, website access"
    for i in 0 1 2; do
        echo "  node $i (${zones[$i]}): S3 API ${GARAGE_S3[$i]}, public web endpoint ${GARAGE_WEB[$i]}, pid ${GARAGE_PIDS[$i]}"
    done
    echo
    echo "\$ skycast-publisher mirror add --s3-endpoint ${GARAGE_S3[2]} --bucket $GARAGE_BUCKET --region $GARAGE_REGION \\"
    echo "      --name garage --credentials $GARAGE_CREDENTIALS"
    quiet "$D/logs/mirror-add.log" "$PUB" mirror add --data "$D/publisher" --s3-endpoint "${GARAGE_S3[2]}" \
        --bucket "$GARAGE_BUCKET" --region "$GARAGE_REGION" --name garage --credentials "$GARAGE_CREDENTIALS"
    echo "(through node 2, in dc2; the credentials file is mode 0600 with access_key_id and secret_access_key)"
    head_v="$(jget "$(mirror_json)" .head_version)"
    wait_mirrored "$head_v"
    echo "the running serve picked the mirror up and copied versions 1 to $head_v in ${MIRROR_SECS}s"
    echo
    echo "main-1's puller stops for a moment: a player reads its config when it starts, and"
    echo "main-1's will list the mirrors; it gets the next version only then, to show where it comes from"
    stop_process "${PULL_PID[main]}"
    cp -r "$ROOT/content-example" "$S10/content"
    sed -e 's|^  music/extra-e.mp3: .*|&\n  music/sweep-60s.mp3: {title: "Sweep", artist: "Skycast Studio", kind: music}|' \
        -e 's|music/extra-e.mp3\]}|music/extra-e.mp3, music/sweep-60s.mp3]}|' \
        "$S10/content/planning-v2.yaml" >"$S10/content/planning-v4.yaml"
    grep -q 'music/sweep-60s.mp3\]}' "$S10/content/planning-v4.yaml" ||
        die "could not add music/sweep-60s.mp3 to $S10/content/planning-v4.yaml"
    echo
    echo "\$ skycast-publisher publish --planning planning-v4.yaml    (planning-v2 plus music/sweep-60s.mp3)"
    t0="$(now)"
    out="$(quiet "$D/logs/publish-v4.log" "$PUB" publish --data "$D/publisher" \
        --planning "$S10/content/planning-v4.yaml" --author demo --message "Add the sweep")"
    echo "$out"
    v4="$(published_version "$out")"
    [[ -n "$v4" ]] || die "publish printed no version: $out"
    wait_mirrored "$v4"
    echo "version $v4 on Garage (media, manifest, signature, then v1/head) $(elapsed "$t0")s after the publish began"
    echo
    echo "\$ skycast-publisher mirror status"
    "$PUB" mirror status --data "$D/publisher" | { IFS= read -r line && echo "$line" && tabs; }

    echo
    echo "(b) main-1 lists two servers (the primary, then the second site of (c)) and, for media,"
    echo "    the web endpoints of Garage nodes 0 and 1 (dc1); a poll every 2 s for a quick fail-over"
    local cfg="$D/players/main-1.toml"
    sed -i -e "s|^server = .*|servers = [\"$URL\", \"$BACKUP_URL\"]|" \
        -e 's|^poll_interval_secs = .*|poll_interval_secs = 2|' "$cfg"
    printf 'mirrors = ["%s", "%s"]\nallow_http_mirrors = true\n' "${GARAGE_WEB[0]}" "${GARAGE_WEB[1]}" >>"$cfg"
    echo "\$ grep -E '^(servers|mirrors|allow_http_mirrors|poll_interval_secs) ' $cfg"
    grep -E '^(servers|mirrors|allow_http_mirrors|poll_interval_secs) ' "$cfg"
    start_puller main
    wait_main "version $v4 installed" "d.get('active_version') == $v4 and (d.get('last_sync') or {}).get('version') == $v4"
    echo "main-1 on version $v4 ${MAIN_SECS}s after its restart"
    served_by
    pyj '
s = d["last_sync"]
media = s["served_by"]["media"]
garage = sum(m["bytes"] for m in media if m["url"] in sys.argv[2:])
other = sum(m["bytes"] for m in media if m["url"] not in sys.argv[2:])
if other == 0 and garage == s["downloaded_bytes"] and garage > 0:
    print("every media byte (%d, the new track) came from Garage, none from the primary" % garage)
else:
    print("!! %d media bytes from Garage, %d from elsewhere (downloaded_bytes %d)" % (garage, other, s["downloaded_bytes"]))
' "${GARAGE_WEB[@]}" <<<"$MAIN_STATUS"

    echo
    echo "(c) A second site: \`follow\` fetches the primary's store with git, checks every version"
    echo "    against the primary's public key before serving it, takes the players' tokens along"
    echo "    and never signs. Its certificate comes from the primary's CA, which players already pin."
    echo "\$ skycast-publisher tls issue --out $S10/second-site-tls"
    quiet "$D/logs/tls-issue.log" "$PUB" tls issue --data "$D/publisher" --out "$S10/second-site-tls"
    local git_port exec_path
    git_port="$(free_port)"
    exec_path="$(git --exec-path)"
    # git-daemon itself: the `git daemon` wrapper would leave it running when killed.
    "$exec_path/git-daemon" --reuseaddr --export-all --base-path="$D/publisher" --listen=127.0.0.1 \
        --port="$git_port" "$D/publisher" </dev/null >"$D/logs/git-daemon.log" 2>&1 &
    GIT_PID=$!
    PIDS+=("$GIT_PID")
    t0="$(now)"
    until (exec 3<>"/dev/tcp/127.0.0.1/$git_port") 2>/dev/null; do
        alive "$GIT_PID" "$D/logs/git-daemon.log"
        past_deadline "$t0" && die "git daemon did not listen on 127.0.0.1:$git_port within ${TIMEOUT}s"
        sleep 0.1
    done
    local from="git://127.0.0.1:$git_port/store.git"
    echo "git daemon serves the primary's store at $from (pid $GIT_PID)"
    echo "\$ skycast-publisher follow --data $S10/second-site --listen 127.0.0.1:$BACKUP_PORT --from $from \\"
    echo "      --key \$(cat publisher/keys/signing.pub) --tls-cert .../server.pem --tls-key .../server.key --ca-cert .../ca.pem --fetch-every-secs 1"
    "$PUB" follow --data "$S10/second-site" --listen "127.0.0.1:$BACKUP_PORT" --from "$from" \
        --key "$(tr -d '[:space:]' <"$D/publisher/keys/signing.pub")" \
        --tls-cert "$S10/second-site-tls/server.pem" --tls-key "$S10/second-site-tls/server.key" \
        --ca-cert "$S10/second-site-tls/ca.pem" --fetch-every-secs 1 >"$D/logs/second-site.log" 2>&1 &
    FOLLOW_PID=$!
    PIDS+=("$FOLLOW_PID")
    # main-1's token, in a 0600 header file rather than on a command line.
    local auth="$S10/main-1.auth" hv=""
    (umask 077 && printf 'Authorization: Bearer %s\n' "$(sed -n 's/^token = "\(.*\)"$/\1/p' "$cfg")" >"$auth")
    t0="$(now)"
    until [[ "$hv" == "$v4" ]]; do
        alive "$FOLLOW_PID" "$D/logs/second-site.log"
        past_deadline "$t0" && die "the second site did not serve version $v4 within ${TIMEOUT}s (log: $D/logs/second-site.log)"
        sleep 0.2
        hv="$(jget "$(curl -s --max-time 2 --cacert "$CA" -H @"$auth" "$BACKUP_URL/v1/head" || true)" .version)"
    done
    echo "second site up at $BACKUP_URL (pid $FOLLOW_PID): version $v4 for main-1's token, $(elapsed "$t0")s after its start"
    wait_main "server_in_use = the primary" "d.get('server_in_use') == '$URL'"
    echo "main-1 server_in_use: $(jget "$MAIN_STATUS" .server_in_use) (the primary)"
    echo
    echo "stopping the primary's serve (pid $PUB_PID) ..."
    stop_process "$PUB_PID"
    local t_stop
    t_stop="$(now)"
    wait_main "fail-over to the second site" "d.get('server_in_use') == '$BACKUP_URL'"
    echo "main-1 server_in_use: $(jget "$MAIN_STATUS" .server_in_use) (the second site), $(elapsed "$t_stop")s after the primary stopped"
    echo "(lille and nantes list only the primary: they play on from their local copy and retry)"
    echo
    echo "\$ skycast-publisher publish --planning content-example/planning-v2.yaml    (on the primary, serve stopped)"
    t0="$(now)"
    out="$(quiet "$D/logs/publish-v5.log" "$PUB" publish --data "$D/publisher" \
        --planning "$ROOT/content-example/planning-v2.yaml" --author demo --message "Back to planning-v2")"
    echo "$out"
    v5="$(published_version "$out")"
    [[ -n "$v5" ]] || die "publish printed no version: $out"
    wait_main "version $v5 installed" "d.get('active_version') == $v5"
    echo "main-1 on version $v5 $(elapsed "$t0")s after the publish, server_in_use $(jget "$MAIN_STATUS" .server_in_use),"
    echo "manifest from $(jget "$MAIN_STATUS" .last_sync.served_by.manifest) (git daemon -> follow, verified -> main-1)"
    echo
    echo "restarting the primary's serve on $URL ..."
    start_publisher
    wait_publisher
    local t_back
    t_back="$(now)"
    wait_main "return to the primary" "d.get('server_in_use') == '$URL'"
    echo "main-1 server_in_use: $(jget "$MAIN_STATUS" .server_in_use) (the primary) again, $(elapsed "$t_back")s after it answered"
    wait_mirrored "$v5"
    echo "serve resumed mirroring: version $v5 on Garage ${MIRROR_SECS}s after its restart"
    wait_version "$v5"
    echo "lille and nantes, which list only the primary, on version $v5 too ${SYNC_SECS}s later"

    echo
    echo "(d) The second site refuses to sign:"
    echo "\$ skycast-publisher publish --data $S10/second-site --planning planning-v4.yaml"
    # The refusal alone, without a backtrace should RUST_BACKTRACE be set here.
    if out="$(RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$PUB" publish --data "$S10/second-site" \
        --planning "$S10/content/planning-v4.yaml" 2>&1)"; then
        die "publish on the second site succeeded: $out"
    fi
    grep -v -e ' INFO ' -e '^$' <<<"$out" || true
    grep -q 'read-only copy of the primary' <<<"$out" || echo "!! not the expected refusal"
}

GARAGE_BIN="$(command -v garage 2>/dev/null || true)"
if [[ -z "$GARAGE_BIN" && -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]]; then
    GARAGE_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/garage"
fi
BACKUP_PORT="$(free_port)"
BACKUP_URL="https://127.0.0.1:$BACKUP_PORT"
if [[ -n "$GARAGE_BIN" ]]; then
    mirrors_and_second_site
else
    echo "step 10 skipped: \`garage\` is not installed (not on PATH, not in ~/.cargo/bin)."
    echo "Install it with \`bash scripts/install-deps.sh\` (it runs \`cargo install --locked garage\`) and run the demo again."
fi

# ---------------------------------------------------------------- end
if [[ $KEEP_RUNNING -eq 1 ]]; then
    say "Running: publisher at $URL, 3 pullers, the webhook receiver$([[ $STEP10 -eq 1 ]] && echo ", Garage, the second site") (Ctrl-C stops everything)"
    echo "CA certificate:  $CA"
    echo "logs:            $D/logs/"
    echo "player configs:  $D/players/*.toml"
    echo "status:          $PULL status --config $D/players/main-1.toml"
    echo "web UI:          $URL/ (your browser must trust $CA, or accept the warning)"
    echo "web UI users:    marketing, commercial, auditor (password $DEMO_PASSWORD)"
    echo "calendar:        $URL/marketing/calendar (marketing), $URL/commercial/calendar (sales' ads)"
    echo "admin password:  \$SKYCAST_ADMIN_PASSWORD if you set it, else the one printed by init above ($D/logs/init.log)"
    echo "dashboard:       $URL/fleet (admin; auditor read-only), JSON at $URL/api/fleet"
    echo "metrics:         http://127.0.0.1:$METRICS_PORT/metrics"
    echo "webhooks:        $HOOK_LOG (receiver pid $RECV_PID)"
    if [[ $STEP10 -eq 1 ]]; then
        echo "Garage:          S3 ${GARAGE_S3[*]}, web ${GARAGE_WEB[*]} (logs $S10/garage/node*/garage.log)"
        echo "mirror status:   $PUB mirror status --data $D/publisher"
        echo "second site:     $BACKUP_URL (follow, pid $FOLLOW_PID), fed by git daemon (pid $GIT_PID)"
    fi
    trap 'exit 0' INT # Ctrl-C is the normal way out here
    while :; do
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "background process $pid stopped (logs in $D/logs/)"
        done
        sleep 1
    done
fi
say "Demo finished: stopping the publisher, the pullers, the webhook receiver$([[ $STEP10 -eq 1 ]] && echo ", Garage and the second site") (run with --keep-running to keep them)"
exit 0
