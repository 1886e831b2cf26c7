#!/bin/sh
# Regenerates the offline-engine fixtures in this folder (needs espeak-ng and sox).
# Every WAV is PCM16 mono 24 kHz little-endian, the Realtime API's input format.
# The reference texts live in references.json (turns in speaking order).
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() {  # say OUT TEXT [VOICE]: espeak-ng (voice "en" unless given) -> 24 kHz PCM16 mono
    espeak-ng -v "${3:-en}" -w "$tmp/raw.wav" "$2"
    sox "$tmp/raw.wav" -r 24000 -c 1 -b 16 -e signed-integer "$1"
}
pad() {  # pad OUT SECONDS: silence of that length
    sox -n -r 24000 -c 1 -b 16 -e signed-integer "$1" trim 0 "$2"
}
say fox.wav "The quick brown fox jumps over the lazy dog."
say weather.wav "What is the weather like today?"
say "$tmp/t1.wav" "Hello world, this is the first turn."
say "$tmp/t2.wav" "I have three apples and two oranges."
pad "$tmp/lead.wav" 0.3
pad "$tmp/gap.wav" 1.2
pad "$tmp/tail.wav" 0.8
sox "$tmp/lead.wav" "$tmp/t1.wav" "$tmp/gap.wav" "$tmp/t2.wav" "$tmp/tail.wav" two_turns.wav
say spanish.wav "Buenos días. Mañana vamos a la playa con mis amigos y después comemos juntos." es
say "$tmp/long1.wav" "Good morning everyone, and thank you for joining the weekly meeting."
say "$tmp/long2.wav" "Today we will talk about the new train schedule and the budget for next year."
pad "$tmp/mid.wav" 0.4
sox "$tmp/lead.wav" "$tmp/long1.wav" "$tmp/mid.wav" "$tmp/long2.wav" "$tmp/tail.wav" meeting.wav
