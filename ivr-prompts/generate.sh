#!/usr/bin/env bash
# Regenerates the IVR prompt WAVs from prompts.toml: `text` prompts are spoken by espeak-ng
# (Russian voice), `synth` prompts are made by sox from nothing. Every WAV comes out as the
# hotline needs it: 8000 Hz, mono, 16-bit signed PCM.
#
#   ./generate.sh                  all prompts
#   ./generate.sh beep 'from_*'    only the prompts whose names match (shell patterns)
#
# Deterministic: the same prompts.toml and the same espeak-ng/sox versions give the same
# bytes (sox runs with -R, which seeds its dither and pluck noise). Each WAV is written to a
# temporary file first and moved into place, so an interrupted run leaves no half-written
# prompt. Needs espeak-ng, sox and python3 >= 3.11 (tomllib).
set -euo pipefail

# The voice. 150 words per minute is a little slower than espeak-ng's default (175), which
# suits a phone line; pitch 50 is the default.
VOICE=ru
SPEED=150
PITCH=50
# Silence before and after speech (seconds): the first syllable is not clipped by a phone
# that needs a moment to start playing, and prompts played in sequence (after_hours_intro,
# from_09, to_18, ...) are 0.2 s apart, like a short pause between words.
PAD=0.1
# Speech is normalised to this peak level (dBFS).
PEAK=-3

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="$here/prompts.toml"

for tool in espeak-ng sox python3; do
    command -v "$tool" >/dev/null || { echo "generate.sh: $tool is not installed" >&2; exit 1; }
done

# prompts.toml → one line per prompt: name, file, kind (text | synth | recorded), payload,
# separated by tabs. Python parses the TOML, substitutes the {variables}, checks the
# entries and applies the name filter; any problem stops the script before a file changes.
list="$(python3 - "$config" "$@" <<'PY'
import fnmatch, re, sys, tomllib

path, patterns = sys.argv[1], sys.argv[2:]

def fail(msg):
    sys.exit(f"generate.sh: {path}: {msg}")

try:
    with open(path, "rb") as f:
        config = tomllib.load(f)
except (OSError, tomllib.TOMLDecodeError) as e:
    fail(e)

variables = {k: v for k, v in config.items() if isinstance(v, str)}
prompts = config.get("prompts")
if not isinstance(prompts, dict) or not prompts:
    fail("no [prompts.NAME] tables")

def substitute(name, text):
    def var(m):
        if m.group(1) not in variables:
            fail(f"prompts.{name}: unknown variable {{{m.group(1)}}}")
        return variables[m.group(1)]
    return re.sub(r"\{([A-Za-z0-9_]+)\}", var, text)

unmatched = set(patterns)
for name, entry in prompts.items():
    if not re.fullmatch(r"[a-z0-9_]+", name):
        fail(f"prompts.{name}: names are lower-case letters, digits and _")
    if not isinstance(entry, dict):
        fail(f"prompts.{name} is not a table")
    unknown = set(entry) - {"file", "text", "synth", "purpose"}
    if unknown:
        fail(f"prompts.{name}: unknown field(s) {', '.join(sorted(unknown))}")
    file = entry.get("file")
    if not isinstance(file, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.wav", file):
        fail(f"prompts.{name}: `file` must be a WAV file name in this directory")
    if "text" in entry and "synth" in entry:
        fail(f"prompts.{name}: has both `text` and `synth`")
    if "text" in entry:
        kind, payload = "text", substitute(name, entry["text"])
    elif "synth" in entry:
        kind, payload = "synth", entry["synth"]
    else:
        kind, payload = "recorded", ""
    if not isinstance(payload, str):
        fail(f"prompts.{name}: `{kind}` must be a string")
    payload = " ".join(payload.split())
    if kind != "recorded" and not payload:
        fail(f"prompts.{name}: empty `{kind}`")
    matched = [p for p in patterns if fnmatch.fnmatchcase(name, p)]
    unmatched -= set(matched)
    if patterns and not matched:
        continue
    print(f"{name}\t{file}\t{kind}\t{payload}")

if unmatched:
    fail(f"no prompt matches {', '.join(sorted(unmatched))}")
PY
)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Read the list on fd 3: espeak-ng and sox must not eat it from stdin.
while IFS=$'\t' read -r -u 3 name file kind payload; do
    out="$tmp/out.wav"
    case "$kind" in
        text)
            printf '%s\n' "$payload" >"$tmp/text.txt"
            espeak-ng -v "$VOICE" -s "$SPEED" -p "$PITCH" -b 1 -f "$tmp/text.txt" -w "$tmp/tts.wav"
            # espeak-ng ends every utterance with ~0.4 s of silence; trim both ends so that
            # pieces played in sequence (the after-hours times) join like one sentence,
            # then resample, normalise and add our own short, even padding.
            sox -R -V1 "$tmp/tts.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out" \
                silence 1 0.005 -60d reverse silence 1 0.005 -60d reverse \
                rate 8000 gain -n "$PEAK" pad "$PAD" "$PAD"
            ;;
        synth)
            # Split the effects chain into words without glob expansion.
            read -r -a effects <<<"$payload"
            sox -R -V1 -n -r 8000 -c 1 -b 16 -e signed-integer "$out" "${effects[@]}"
            ;;
        recorded)
            printf '%-22s kept (recorded, not generated)\n' "$name"
            continue
            ;;
    esac
    mv -f "$out" "$here/$file"
    printf '%-22s %s s\n' "$name" "$(soxi -D "$here/$file")"
done 3<<<"$list"

# WAVs that no prompt names any more: the hotline ignores them, so say so.
if [ $# -eq 0 ]; then
    for wav in "$here"/*.wav; do
        [ -e "$wav" ] || continue
        base="$(basename "$wav")"
        if ! grep -qF "\"$base\"" "$config"; then
            echo "note: $base is not named in prompts.toml (not used; delete it?)" >&2
        fi
    done
fi
