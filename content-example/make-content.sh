#!/usr/bin/env bash
# Generates every audio file under content-example/ from nothing but sox
# synthesis and espeak-ng speech, then encodes them with lame.
#
#   bash content-example/make-content.sh
#
# Output format of every file: MP3, mono, 44 100 Hz, 64 kbit/s CBR, no ID3 tag,
# no ReplayGain (so a loudness test sees the raw level).
#
# Deterministic as far as the tools allow: sox runs with -R (fixed seeds, so
# the pink noise is the same every run) and -D (no dither); espeak-ng and lame
# are deterministic for a given version (tested with SoX 14.4.2, LAME 3.100,
# eSpeak NG 1.51). Idempotent: each file is built in a temporary directory and
# only replaces the committed file when its bytes differ, so a second run
# changes nothing (not even mtimes).
#
# Sweep formula (music/sweep-60s.mp3), used by the playback-position test:
#   linear sine sweep, 60 s, 200 Hz -> 2000 Hz, constant amplitude (-6 dBFS)
#   instantaneous frequency  f(t) = 200 + 30 * t   Hz   (0 <= t <= 60 s)
#   playback position        t(f) = (f - 200) / 30  s
#   (phase(t) = 2*pi*(200*t + 15*t^2); sox "synth 60 sine 200:2000", `:` = linear)
# Decoders that honour the LAME gapless header (mpg123, ffmpeg, symphonia with
# gapless enabled) return exactly 60 s; a decoder that ignores it sees 1105
# extra samples (~25 ms, i.e. ~0.75 Hz) of encoder/decoder delay at the start.

set -euo pipefail

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RATE=44100

for tool in sox lame espeak-ng; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "make-content: '$tool' is missing: apt-get install -y sox libsox-fmt-mp3 lame espeak-ng mpg123" >&2
        exit 1
    fi
done

export LC_ALL=C
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# sox with fixed seeds, no dither, mono, 44.1 kHz.
sx() { sox -R -D "$@"; }
# Synthesise: gen OUT.wav SYNTH-EFFECT-ARGS...
gen() {
    local out="$1"
    shift
    sx -n -r "$RATE" -c 1 -b 16 "$out" "$@"
}

# MIDI note number -> frequency in Hz (A4 = 69 = 440 Hz), 3 decimals.
hz() { awk -v n="$1" 'BEGIN { printf "%.3f", 440 * 2 ^ ((n - 69) / 12) }'; }

# note OUT.wav TYPE MIDI DUR [FADE_OUT]: one note with a short attack and a release.
note() {
    local out="$1" type="$2" midi="$3" dur="$4" rel="${5:-0.08}"
    if [[ "$midi" == "r" ]]; then
        gen "$out" trim 0 "$dur"
    else
        gen "$out" synth "$dur" "$type" "$(hz "$midi")" fade q 0.01 "$dur" "$rel"
    fi
}

# bell OUT.wav MIDI DUR: fundamental + inharmonic partials, long logarithmic decay.
bell() {
    local out="$1" midi="$2" dur="$3" f
    if [[ "$midi" == "r" ]]; then
        gen "$out" trim 0 "$dur"
        return
    fi
    f="$(hz "$midi")"
    gen "$TMP/b1.wav" synth "$dur" sine "$f" fade l 0.005 "$dur" "$dur"
    gen "$TMP/b2.wav" synth "$dur" sine "$(awk -v f="$f" 'BEGIN{printf "%.3f", f*2.76}')" fade l 0.005 "$dur" "$(awk -v d="$dur" 'BEGIN{print d*0.6}')"
    gen "$TMP/b3.wav" synth "$dur" sine "$(awk -v f="$f" 'BEGIN{printf "%.3f", f*5.40}')" fade l 0.005 "$dur" "$(awk -v d="$dur" 'BEGIN{print d*0.3}')"
    sx -m -v 0.6 "$TMP/b1.wav" -v 0.25 "$TMP/b2.wav" -v 0.12 "$TMP/b3.wav" "$out"
}

# chord OUT.wav TYPE DUR MIDI...: notes of equal loudness summed.
chord() {
    local out="$1" type="$2" dur="$3"
    shift 3
    local args=() first=1 m
    for m in "$@"; do
        if ((first)); then
            args+=(synth "$dur" "$type" "$(hz "$m")")
            first=0
        else
            args+=(synth "$dur" "$type" mix "$(hz "$m")")
        fi
    done
    gen "$out" "${args[@]}" gain -n -6 fade h 0.08 "$dur" 0.6
}

# melody OUT.wav KIND DUR MIDI...: notes played one after another.
# KIND is a sox synth type (sine, triangle, pluck...) or "bell".
melody() {
    local out="$1" kind="$2" dur="$3"
    shift 3
    local i=0 m parts=()
    for m in "$@"; do
        local p
        p="$(printf '%s/m_%04d.wav' "$TMP" "$i")"
        if [[ "$kind" == bell ]]; then
            bell "$p" "$m" "$dur"
        else
            note "$p" "$kind" "$m" "$dur"
        fi
        parts+=("$p")
        i=$((i + 1))
    done
    sx "${parts[@]}" "$out"
    rm -f "${parts[@]}"
}

# finish IN.wav OUT.wav FADE_IN FADE_OUT: fades over the whole track, peak at -3 dBFS.
finish() {
    local in="$1" out="$2" fin="$3" fout="$4" len
    len="$(soxi -D "$in")"
    sx "$in" "$out" fade t "$fin" "$len" "$fout" gain -n -3
}

# encode IN.wav REL/PATH.mp3: lame to a temp file, replace the kept file only if it differs.
encode() {
    local in="$1" rel="$2" tmp_mp3="$TMP/enc.mp3"
    lame --quiet --noreplaygain -m m -b 64 --cbr --resample 44.1 -q 2 "$in" "$tmp_mp3"
    mkdir -p "$(dirname "$OUT/$rel")"
    if cmp -s "$tmp_mp3" "$OUT/$rel"; then
        echo "unchanged  $rel"
    else
        mv "$tmp_mp3" "$OUT/$rel"
        echo "written    $rel"
    fi
}

# speech OUT.wav TEXT: espeak-ng (British English, 150 wpm) to mono 44.1 kHz with a little silence around.
speech() {
    local out="$1" text="$2"
    espeak-ng -v en-gb -s 150 -p 45 -w "$TMP/speech_raw.wav" "$text"
    sx "$TMP/speech_raw.wav" -r "$RATE" -c 1 -b 16 "$out" pad 0.3 0.5 gain -n -3
}

# ---------------------------------------------------------------- music
# Pentatonic C major around C5 (72): C D E G A.
echo "== music"

# tone-a "Morning Tone": a slow sine melody over a soft C3+G3 drone (20 s).
melody "$TMP/a_mel.wav" sine 0.5 \
    72 74 76 79 76 74 72 r 74 76 79 81 79 76 74 r \
    76 79 81 84 81 79 76 r 74 76 74 72 69 72 74 r \
    72 76 79 76 74 72 69 72
gen "$TMP/a_drone.wav" synth 20 sine "$(hz 48)" synth 20 sine mix "$(hz 55)" gain -n -6
sx -m -v 0.7 "$TMP/a_mel.wav" -v 0.35 "$TMP/a_drone.wav" "$TMP/a_mix.wav"
finish "$TMP/a_mix.wav" "$TMP/tone-a.wav" 1 2
encode "$TMP/tone-a.wav" music/tone-a.mp3

# chords-b: I-vi-IV-V twice in C, triangle-wave triads, 2.5 s each (20 s).
parts=()
i=0
for ch in "60 64 67" "57 60 64" "53 57 60" "55 59 62" "60 64 67" "57 60 64" "53 57 60" "55 59 62 65"; do
    # shellcheck disable=SC2086 # word splitting of the chord notes is intended
    chord "$TMP/c_$i.wav" triangle 2.5 $ch
    parts+=("$TMP/c_$i.wav")
    i=$((i + 1))
done
sx "${parts[@]}" "$TMP/b_mix.wav"
finish "$TMP/b_mix.wav" "$TMP/chords-b.wav" 0.5 2
encode "$TMP/chords-b.wav" music/chords-b.mp3

# arpeggio-c: plucked-string arpeggios over Am-F-C-G, 0.25 s per note (20 s).
arp=()
for _ in 1 2; do
    arp+=(57 60 64 69 64 60 57 60 53 57 60 65 60 57 53 57 48 52 55 60 55 52 48 52 55 59 62 67 62 59 55 59 57 60 64 69 72 69 64 60)
done
melody "$TMP/c_mel.wav" pluck 0.25 "${arp[@]}"
finish "$TMP/c_mel.wav" "$TMP/arpeggio-c.wav" 0.2 2
encode "$TMP/arpeggio-c.wav" music/arpeggio-c.mp3

# bells-d: slow bell melody, 1 s per strike (20 s).
melody "$TMP/d_mel.wav" bell 1 \
    79 76 72 76 79 84 79 r 77 74 71 74 77 79 76 r 72 76 79 84
finish "$TMP/d_mel.wav" "$TMP/bells-d.wav" 0.05 2
encode "$TMP/bells-d.wav" music/bells-d.mp3

# christmas-bells: the chorus of "Jingle Bells" (J. Pierpont, 1857, public domain)
# as bells, 0.3 s per eighth note (~20 s).
E=76 G=79 C=72 D=74 F=77
jb=(
    "$E" "$E" "$E" r  "$E" "$E" "$E" r  "$E" "$G" "$C" "$D" "$E" r r r
    "$F" "$F" "$F" "$F" "$F" "$E" "$E" "$E" "$E" "$D" "$D" "$E" "$D" r "$G" r
    "$E" "$E" "$E" r  "$E" "$E" "$E" r  "$E" "$G" "$C" "$D" "$E" r r r
    "$F" "$F" "$F" "$F" "$F" "$E" "$E" "$E" "$G" "$G" "$F" "$D" "$C" r r r
)
melody "$TMP/x_mel.wav" bell 0.3 "${jb[@]}"
finish "$TMP/x_mel.wav" "$TMP/christmas-bells.wav" 0.05 1.5
encode "$TMP/christmas-bells.wav" music/christmas-bells.mp3

# extra-e "Evening Pad": soft sine chords with tremolo, 3 s each (15 s).
# Only used by planning-v2.yaml (the incremental-sync demo).
parts=()
i=0
for ch in "57 60 64 67" "53 57 60 64" "55 59 62 67" "52 55 59 64" "57 60 64 69"; do
    # shellcheck disable=SC2086 # word splitting of the chord notes is intended
    chord "$TMP/e_$i.wav" sine 3 $ch
    parts+=("$TMP/e_$i.wav")
    i=$((i + 1))
done
sx "${parts[@]}" "$TMP/e_mix.wav" tremolo 4 30
finish "$TMP/e_mix.wav" "$TMP/extra-e.wav" 1 2
encode "$TMP/extra-e.wav" music/extra-e.mp3

# sweep-60s: linear sine sweep, f(t) = 200 + 30*t Hz (see the header).
# No fades: the amplitude stays constant so every instant can be measured.
gen "$TMP/sweep.wav" synth 60 sine 200:2000 gain -6
encode "$TMP/sweep.wav" music/sweep-60s.mp3

# ---------------------------------------------------------------- loudness
# The same 10 s of pink noise (fixed seed), peak -3 dBFS for loud.mp3 and
# exactly 12 dB lower for quiet.mp3 (quiet = loud * 10^(-12/20)).
echo "== loudness"
gen "$TMP/pink.wav" synth 10 pinknoise fade h 0.05 10 0.05 gain -n -3
sx "$TMP/pink.wav" "$TMP/loud.wav"
sx "$TMP/pink.wav" "$TMP/quiet.wav" gain -12
encode "$TMP/loud.wav" loudness/loud.mp3
encode "$TMP/quiet.wav" loudness/quiet.mp3

# ---------------------------------------------------------------- speech
echo "== speech"
# A two-note chime (E5 then C5) before the announcements.
bell "$TMP/ch1.wav" 76 0.6
bell "$TMP/ch2.wav" 72 0.9
sx "$TMP/ch1.wav" "$TMP/ch2.wav" "$TMP/chime.wav" gain -n -6
# Three rising beeps before the urgent message.
gen "$TMP/alert.wav" synth 0.25 square 880 fade q 0.01 0.25 0.05 pad 0 0.1 repeat 2 gain -n -10

speech "$TMP/s.wav" "Today only at Skycast Market: two coffees for the price of one!"
encode "$TMP/s.wav" ads/coffee.mp3

speech "$TMP/s.wav" "Fresh bread every morning from seven, baked in the shop."
encode "$TMP/s.wav" ads/bread.mp3

speech "$TMP/s.wav" "Dear customers, the shop closes in thirty minutes. Thank you for your visit."
sx "$TMP/chime.wav" "$TMP/s.wav" "$TMP/closing.wav"
encode "$TMP/closing.wav" announcements/closing.mp3

speech "$TMP/s.wav" "Attention please. For safety reasons, please leave the shop calmly by the nearest exit."
sx "$TMP/alert.wav" "$TMP/s.wav" "$TMP/urgent.wav"
encode "$TMP/urgent.wav" urgent/evacuation.mp3

# ---------------------------------------------------------------- check
echo "== check"
status=0
while IFS= read -r f; do
    if command -v mpg123 >/dev/null 2>&1; then
        ok() { mpg123 -q -t "$1" >/dev/null 2>&1; }
    else
        ok() { sox "$1" -n stat >/dev/null 2>&1; }
    fi
    if ok "$f"; then
        printf 'ok  %8d bytes  %s\n' "$(stat -c %s "$f")" "${f#"$OUT"/}"
    else
        echo "FAILED to decode ${f#"$OUT"/}" >&2
        status=1
    fi
done < <(find "$OUT" -name '*.mp3' | sort)
du -sh "$OUT" | awk '{print "content-example total: " $1}'
exit "$status"
