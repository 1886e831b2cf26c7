#!/usr/bin/env bash
# The one test command: sets up everything on a fresh Debian machine and runs the suite.
#
#   bash scripts/test.sh            # full suite (what CI runs)
#   bash scripts/test.sh -k reconnect   # extra arguments go to pytest
#
# Steps: system packages with apt (when root and missing), a virtualenv in .venv with the
# project and its dev/audio/local extras, the virtual sound card (scripts/virtual-audio.sh),
# a virtual display (Xvfb, started by the GUI tests themselves), ruff, mypy, pytest with a
# deadlock guard, then the core suite on the oldest and newest supported Pythons when
# pyenv has them (RS_OTHER_PYTHONS=0 skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1

APT_PACKAGES="portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox xvfb xdotool x11-apps python3-tk tk"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "== apt-get install$missing"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
echo "== pip install -e .[dev,audio,local,fast]"
.venv/bin/python -m pip install -q -U pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev,audio,local,fast]"

echo "== virtual sound card"
eval "$(bash scripts/virtual-audio.sh start)"

echo "== ruff"
.venv/bin/ruff check realtime_sync tests examples benchmarks scripts
echo "== mypy"
.venv/bin/mypy realtime_sync

echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout=300 -m "not live" "$@"

if [ "${RS_OTHER_PYTHONS:-1}" = 1 ] && [ $# = 0 ]; then
  for v in 3.9 3.13; do
    other=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/$v.*/bin/python 2>/dev/null | tail -1 || true)
    [ -n "$other" ] || { echo "== Python $v not found: skipped"; continue; }
    echo "== core suite on $($other --version)"
    venv=".venv-$v"
    [ -x "$venv/bin/python" ] || "$other" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -U pip >/dev/null
    "$venv/bin/python" -m pip install -q -e ".[audio,server]" pytest pytest-timeout jsonschema hypothesis
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout=300 \
      -m "not live and not local_engine and not gui and not slow and not audio_device" \
      tests/test_client.py tests/test_exits.py tests/test_reliability.py \
      tests/test_conformance.py tests/test_transcription.py tests/test_captions.py \
      tests/test_server.py tests/test_audio_convert.py tests/test_audio_sources.py \
      tests/test_audio_stream.py tests/test_conversation.py tests/test_tools.py \
      tests/test_hostile_network.py tests/test_hostile_features.py tests/test_feature_contract.py \
      tests/test_models.py tests/test_model_rules.py tests/test_client_vad.py \
      tests/test_transcriber_drops.py tests/test_batch.py tests/test_translation.py \
      tests/test_fidelity.py tests/test_wait_history.py tests/test_hostile_input.py tests/test_hostile_secrets.py \
      tests/test_server_hardening.py tests/test_architecture.py tests/test_live_parts.py
  done
fi
