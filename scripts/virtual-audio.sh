#!/usr/bin/env bash
# virtual-audio.sh start|stop|status|env
#
# A headless PulseAudio "sound card" for machines without one (CI, containers), so that real
# PyAudio/PortAudio code can be exercised:
#   source "vmic"  (default input)  = whatever is played into the sink "micfeed"
#   sink   "vspk"  (default output) = record "vspk.monitor" to check what was played
# Everything runs at 24 kHz mono s16le, the Realtime API's wire format.
#
# start   installs the packages if missing (apt-get, root only), starts the daemon if it is not
#         already running (idempotent), and prints the environment to use, e.g.
#             eval "$(scripts/virtual-audio.sh start)"
# stop    stops the daemon and its keep-alive streams (idempotent).
# status  exits 0 when the rig is up.
# env     prints the environment lines only.
#
# VPULSE_DIR (default /tmp/vpulse) holds the runtime dir, the log and the pid files.
set -euo pipefail

VPULSE_DIR=${VPULSE_DIR:-/tmp/vpulse}
RUNTIME_DIR=$VPULSE_DIR/run
PA_HOME=$VPULSE_DIR/home
LOG=$VPULSE_DIR/pulseaudio.log
KEEPALIVE_PIDS=$VPULSE_DIR/keepalive.pids
RATE=24000
FMT=(--rate=$RATE --channels=1 --format=s16le)

say() { echo "virtual-audio: $*" >&2; }

pa_env() {
    export XDG_RUNTIME_DIR=$RUNTIME_DIR HOME=$PA_HOME
    export PULSE_SERVER=unix:$RUNTIME_DIR/pulse/native
}

print_env() {
    echo "export XDG_RUNTIME_DIR=$RUNTIME_DIR"
    echo "export PULSE_SERVER=unix:$RUNTIME_DIR/pulse/native"
}

have_alsa_pulse_plugin() {
    compgen -G "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so" >/dev/null \
        || compgen -G "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so" >/dev/null
}

have_portaudio() {
    compgen -G "/usr/lib/*/libportaudio.so*" >/dev/null || compgen -G "/usr/lib/libportaudio.so*" >/dev/null
}

install_missing() {
    local missing=()
    command -v pulseaudio >/dev/null || missing+=(pulseaudio)
    { command -v pactl >/dev/null && command -v pacat >/dev/null; } || missing+=(pulseaudio-utils)
    have_alsa_pulse_plugin || missing+=(libasound2-plugins)
    have_portaudio || missing+=(portaudio19-dev)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "missing packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and retry"
        exit 2
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

is_running() {
    ( pa_env; pactl list short sinks 2>/dev/null | grep -q "[[:space:]]micfeed[[:space:]]" \
      && pactl list short sources 2>/dev/null | grep -q "[[:space:]]vmic[[:space:]]" \
      && pactl list short sinks 2>/dev/null | grep -q "[[:space:]]vspk[[:space:]]" )
}

keepalive_running() {
    [ -s "$KEEPALIVE_PIDS" ] || return 1
    local pid
    while read -r pid; do
        kill -0 "$pid" 2>/dev/null || return 1
    done < "$KEEPALIVE_PIDS"
}

stop_keepalive() {
    local pid
    if [ -f "$KEEPALIVE_PIDS" ]; then
        while read -r pid; do
            # only kill our own pacat processes
            if [ -n "$pid" ] && grep -q pacat "/proc/$pid/cmdline" 2>/dev/null; then
                kill "$pid" 2>/dev/null || true
            fi
        done < "$KEEPALIVE_PIDS"
        rm -f "$KEEPALIVE_PIDS"
    fi
}

start_keepalive() {
    # An idle null sink renders in ~2 s blocks, which makes the first read of a new capture
    # stream stall; a low-latency silent stream into each sink keeps them ticking every 50 ms.
    stop_keepalive
    local sink
    for sink in micfeed vspk; do
        nohup pacat --playback -d "$sink" --latency-msec=50 "${FMT[@]}" /dev/zero \
            >/dev/null 2>&1 &
        echo $! >> "$KEEPALIVE_PIDS"
    done
}

warm_up() {
    # wait until the virtual microphone delivers 100 ms of audio promptly
    local i
    for i in 1 2 3; do
        if timeout 10 sh -c "parec -d vmic --latency-msec=50 ${FMT[*]} 2>/dev/null | head -c 4800 >/dev/null"; then
            return 0
        fi
    done
    say "virtual microphone did not deliver audio; see $LOG"
    return 1
}

start() {
    install_missing
    mkdir -p "$RUNTIME_DIR" "$PA_HOME"
    chmod 700 "$RUNTIME_DIR"
    pa_env
    if is_running; then
        keepalive_running || start_keepalive
        say "already running"
    else
        # a stale daemon (e.g. modules missing) is replaced
        pulseaudio --kill >/dev/null 2>&1 || true
        pulseaudio --daemonize=yes -n --disable-shm=yes --exit-idle-time=-1 --disallow-exit \
            --log-target=file:"$LOG" \
            -L "module-native-protocol-unix auth-anonymous=1" \
            -L "module-null-sink sink_name=micfeed rate=$RATE channels=1 format=s16le" \
            -L "module-null-sink sink_name=vspk rate=$RATE channels=1 format=s16le" \
            -L "module-remap-source source_name=vmic master=micfeed.monitor channels=1"
        local i
        for i in $(seq 50); do is_running && break; sleep 0.1; done
        is_running || { say "pulseaudio did not start; see $LOG"; exit 1; }
        pactl set-default-source vmic
        pactl set-default-sink vspk
        start_keepalive
        say "started (log: $LOG)"
    fi
    warm_up
    print_env
}

stop() {
    stop_keepalive
    if [ -d "$RUNTIME_DIR" ]; then
        ( pa_env; pulseaudio --kill >/dev/null 2>&1 || true )
        local i
        for i in $(seq 30); do is_running || break; sleep 0.1; done
    fi
    say "stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if is_running; then say "running"; print_env; else say "not running"; exit 1; fi ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
