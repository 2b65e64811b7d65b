#!/usr/bin/env bash
# Build the offline corpora of docs/pretraining-results.md under data/ (needs the .venv of scripts/setup.sh):
#   data/pydoc.txt       the help topics that ship with Python (text)
#   data/speech/*.wav    sentences of that corpus spoken by espeak-ng at 16 kHz (speech; installs espeak-ng)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-300}"
mkdir -p data/speech
.venv/bin/python - <<'PY'
import re
from pydoc_data.topics import topics
lines = []
for text in topics.values():
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block.split()) >= 6 and not set(block) <= set("*=-~ "):
            lines.append(block)
open("data/pydoc.txt", "w").write("\n".join(lines) + "\n")
print(f"data/pydoc.txt: {len(lines)} paragraphs")
PY
if ! command -v espeak-ng >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) || { echo "could not install espeak-ng (apt-get); speech data skipped" >&2; exit 1; }
fi
.venv/bin/python - "$count" <<'PY'
import re, subprocess, sys
count = int(sys.argv[1])
text = open("data/pydoc.txt").read()
sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 30 <= len(s.strip()) <= 160 and re.search("[a-z]", s)]
voices = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+m7", "en-gb+f4"]
for index, sentence in enumerate(sentences[:count]):
    voice = voices[index % len(voices)]
    speed = str(140 + (index * 7) % 60)
    path = f"data/speech/{index:04d}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", speed, "-w", path + ".tmp.wav", sentence], check=True)
    # espeak-ng writes 22.05 kHz; resample to 16 kHz mono with the library's loader
    import soundfile
    from data2vec.audio.io import load_audio
    soundfile.write(path, load_audio(path + ".tmp.wav", sampling_rate=16000), 16000)
    import os; os.remove(path + ".tmp.wav")
print(f"data/speech: {min(count, len(sentences))} utterances")
PY
