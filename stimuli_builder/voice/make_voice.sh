#!/usr/bin/env bash
# Regenerate the spoken attention-check instruction (stimuli_builder/attention.py):
# "Attention check. Please choose answer number" and the numbers one to ten, each trimmed
# of silence and stored as 16 kHz 16-bit FLAC. Needs Debian's espeak-ng; the build itself
# does not (it reads these files). Made with eSpeak NG 1.51, voice en-us, 145 words/min.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 145 -w "$tmp/instruction.wav" "Attention check. Please choose answer number"
i=1
for word in one two three four five six seven eight nine ten; do
    espeak-ng -v en-us -s 145 -w "$tmp/number-$i.wav" "$word."
    i=$((i + 1))
done
python3 - "$tmp" <<'PY'
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
    sf.write(f"{wav.stem}.flac", audio, 16000, format="FLAC", subtype="PCM_16")
PY
