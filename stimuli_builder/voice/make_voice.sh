#!/usr/bin/env bash
# Regenerate the spoken attention-check instruction (stimuli_builder/attention.py) in each
# study language: "Attention check. Choose answer number" and the numbers one to
# ten, each trimmed of silence and stored as 16 kHz 16-bit FLAC in voice/<language>/.
# Needs Debian's espeak-ng; the build itself does not (it reads these files). Made with
# eSpeak NG 1.51 at 165 words/min: voice en-us for en, de for de.
set -euo pipefail
cd "$(dirname "$0")"
speak() {  # language, espeak voice, instruction, ten numbers
    local language=$1 voice=$2 text=$3
    shift 3
    local tmp
    tmp=$(mktemp -d)
    espeak-ng -v "$voice" -s 165 -w "$tmp/instruction.wav" "$text"
    local i=1
    for word in "$@"; do
        espeak-ng -v "$voice" -s 165 -w "$tmp/number-$i.wav" "$word."
        i=$((i + 1))
    done
    mkdir -p "$language"
    python3 - "$tmp" "$language" <<'PY'
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

for wav in sorted(Path(sys.argv[1]).glob("*.wav")):
    audio, sr = sf.read(wav)
    loud = np.nonzero(np.abs(audio) > 1e-3)[0]
    audio = audio[max(0, loud[0] - int(0.03 * sr)) : loud[-1] + int(0.08 * sr)]
    audio = signal.resample_poly(audio, 320, 441)  # 22050 -> 16000 Hz
    sf.write(f"{sys.argv[2]}/{wav.stem}.flac", audio, 16000, format="FLAC", subtype="PCM_16")
PY
    rm -rf "$tmp"
}
speak en en-us "Attention check. Choose answer number" \
    one two three four five six seven eight nine ten
speak de de "Aufmerksamkeitstest. Wählen Sie Antwort Nummer" \
    eins zwei drei vier fünf sechs sieben acht neun zehn
