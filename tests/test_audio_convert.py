"""Format conversion to the wire format (24 kHz mono PCM16): decoding, mixing, resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime_sync.audio import StreamConverter, convert, resample
from realtime_sync.errors import AudioError

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000]


def encode(x16: np.ndarray, sample_width: int) -> bytes:
    """Encode an int array in 16-bit units (any channel layout, already interleaved)."""
    x = x16.astype(np.int64)
    if sample_width == 1:
        return ((x >> 8) + 128).astype(np.uint8).tobytes()
    if sample_width == 2:
        return x.astype("<i2").tobytes()
    if sample_width == 3:
        v = (x << 8) & 0xFFFFFF
        b = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8)
        return b.tobytes()
    return (x << 16).astype("<i4").tobytes()


def sine(freq: float, rate: int, n: int, amp: float) -> np.ndarray:
    t = np.arange(n) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t))


def pcm(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float64)


def interleave(mono: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_bit_depths_and_channel_counts_decode_to_the_same_samples(width, channels):
    rng = np.random.default_rng(width * 10 + channels)
    x = rng.integers(-32768, 32768, 2400)
    if width == 1:
        x = (x >> 8) << 8  # 8-bit carries only the top byte
    data = encode(interleave(x, channels), width)
    out = convert(data, rate=24000, channels=channels, sample_width=width)
    assert np.array_equal(pcm(out), x)


def test_mono_16bit_at_24k_passes_through_byte_for_byte():
    data = bytes(range(256)) * 10
    assert convert(data, rate=24000, channels=1, sample_width=2) == data
    assert convert(data + b"\x01", rate=24000, channels=1, sample_width=2) == data


def test_stereo_is_averaged_so_opposite_channels_cancel():
    x = sine(440, 24000, 4800, 8000)
    stereo = np.stack([x, -x], axis=1).reshape(-1)
    out = convert(encode(stereo, 2), rate=24000, channels=2, sample_width=2)
    assert not pcm(out).any()
    left_only = np.stack([x, np.zeros_like(x)], axis=1).reshape(-1)
    out = convert(encode(left_only, 2), rate=24000, channels=2, sample_width=2)
    assert np.abs(pcm(out) - x / 2).max() <= 0.5


def test_24_and_32_bit_round_to_nearest_16_bit_step():
    # 24-bit value 0x000180 is 1.5 steps of 16 bits -> rounds to 2; 0x00017F -> 1
    data = bytes([0x80, 0x01, 0x00, 0x7F, 0x01, 0x00, 0x80, 0xFE, 0xFF])
    assert pcm(convert(data, rate=24000, channels=1, sample_width=3)).tolist() == [2, 1, -2]
    full = np.array([2**31 - 1, -(2**31)], dtype="<i4").tobytes()
    assert pcm(convert(full, rate=24000, channels=1, sample_width=4)).tolist() == [32767, -32768]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from(RATES),
    channels=st.integers(1, 2),
    width=st.sampled_from([1, 2, 3, 4]),
    seconds=st.floats(0.2, 1.0),
    freq_frac=st.floats(0.05, 0.7),
    amp=st.floats(2000, 20000),
)
def test_length_level_and_frequency_are_preserved(rate, channels, width, seconds, freq_frac, amp):
    n = int(rate * seconds)
    nyquist = min(rate, 24000) / 2
    freq = freq_frac * nyquist
    x = sine(freq, rate, n, amp)
    data = encode(interleave(x, channels), width)
    out = pcm(convert(data, rate=rate, channels=channels, sample_width=width))
    # length: n * 24000 / rate frames, rounded half up
    assert len(out) == (2 * n * 24000 + rate) // (2 * rate)
    # level: RMS away from the edges (resampler ramp) within 2 % of the input's RMS
    quantised = (x.astype(np.int64) >> 8) << 8 if width == 1 else x
    level_in = np.sqrt(np.mean(quantised**2))
    edge = len(out) // 10
    mid = out[edge:-edge]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(level_in, rel=0.02)
    # frequency: the spectral peak stays at the same frequency (within one FFT bin)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    peak_hz = np.argmax(spectrum) * 24000 / len(mid)
    assert abs(peak_hz - freq) <= 24000 / len(mid) + 1


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_resample_round_trip_keeps_the_waveform(rate):
    x = sine(1000, 24000, 24000, 10000)
    there = resample(encode(x, 2), 24000, rate)
    assert len(there) // 2 == rate
    back = pcm(resample(there, rate, 24000))
    assert len(back) == len(x)
    err = np.abs(back[1000:-1000] - x[1000:-1000]).max()
    assert err <= 40  # soxr HQ: better than -48 dB relative to the signal here


@settings(max_examples=30, deadline=None)
@given(
    rate=st.sampled_from(RATES),
    channels=st.integers(1, 3),
    width=st.sampled_from([1, 2, 3, 4]),
    cuts=st.lists(st.integers(1, 5000), min_size=1, max_size=8),
)
def test_stream_converter_equals_one_shot_for_any_chunking(rate, channels, width, cuts):
    rng = np.random.default_rng(len(cuts))
    x = rng.integers(-20000, 20000, 3000 * channels)
    data = encode(x, width)
    whole = convert(data, rate=rate, channels=channels, sample_width=width)
    conv = StreamConverter(rate, channels, width)
    parts, pos = [], 0
    for c in cuts:
        parts.append(conv.process(data[pos : pos + c]))
        pos += c
    parts.append(conv.process(data[pos:]))
    parts.append(conv.flush())
    assert b"".join(parts) == whole


def test_stream_converter_can_be_reused_after_flush():
    x = encode(sine(300, 48000, 4800, 5000), 2)
    conv = StreamConverter(48000)
    first = conv.process(x) + conv.flush()
    second = conv.process(x) + conv.flush()
    assert first == second == resample(x, 48000)


def test_bad_formats_raise_audio_error():
    with pytest.raises(AudioError, match="sample width"):
        convert(b"\0" * 10, rate=24000, channels=1, sample_width=5)
    with pytest.raises(AudioError, match="sample rate"):
        StreamConverter(0)
