"""Hostile audio files for the ingest batch: lying WAV headers, broken or disguised
containers, bad samples, and file-system objects (FIFOs, folders, symlinks) named as audio."""

from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf

from tests.common.audio import synth_music
from tests.common.hostile_writer import ACCEPTED, BatchWriter, Expect, Kinds, Q


def wav_bytes(
    *,
    rate: int = 22050,
    channels: int = 1,
    bits: int = 16,
    format_tag: int = 1,
    frames: int = 22050,
    declared_data_bytes: int | None = None,
    data: bytes | None = None,
) -> bytes:
    """A RIFF/WAVE file whose header says exactly what the arguments say (true or not)."""
    block = channels * bits // 8
    if data is None:
        rng = np.random.default_rng(frames + rate)
        samples = (rng.standard_normal(frames * channels) * 3000).astype("<i2")
        data = samples.tobytes()
    size = len(data) if declared_data_bytes is None else declared_data_bytes
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
    body += struct.pack("<I", size & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body) & 0xFFFFFFFF) + body


AUDIO_KINDS = Kinds()


def _audio(w: BatchWriter, name: str, data: bytes, expect: Expect, kind_name: str) -> None:
    (w.root / name).write_bytes(data)
    w.csv(kind_name, name, expect)


@AUDIO_KINDS.register("audio/zero-length")
def _zero(w: BatchWriter) -> None:
    _audio(w, "zero.wav", b"", Expect(Q, "zero_bytes"), "audio/zero-length")


@AUDIO_KINDS.register("audio/truncated-flac")
def _truncated(w: BatchWriter) -> None:
    full = w.music(w.base / "whole.flac", seconds=2.0).read_bytes()
    _audio(
        w,
        "cut.flac",
        full[: len(full) // 2],
        Expect(Q, "truncated_or_corrupt"),
        "audio/truncated-flac",
    )


@AUDIO_KINDS.register("audio/corrupt-format-tag")
def _format_tag(w: BatchWriter) -> None:
    data = wav_bytes(format_tag=0x0161)  # WMA inside a WAV header
    _audio(w, "wma.wav", data, Expect(Q, "unsupported_codec"), "audio/corrupt-format-tag")


@AUDIO_KINDS.register("audio/1hz-wav")
def _one_hz(w: BatchWriter) -> None:
    # 8 KB of samples at 1 Hz: "4000 s of audio" that once took 773 MB to refuse.
    data = wav_bytes(rate=1, frames=4000)
    _audio(w, "1hz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/1hz-wav")


@AUDIO_KINDS.register("audio/3999hz-wav")
def _low_rate(w: BatchWriter) -> None:
    data = wav_bytes(rate=3999, frames=8000)
    _audio(w, "3999hz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/3999hz-wav")


@AUDIO_KINDS.register("audio/1mhz-wav")
def _high_rate(w: BatchWriter) -> None:
    data = wav_bytes(rate=1_000_000, frames=4000)
    _audio(w, "1mhz.wav", data, Expect(Q, "implausible_sample_rate"), "audio/1mhz-wav")


@AUDIO_KINDS.register("audio/rate-zero")
def _rate_zero(w: BatchWriter) -> None:
    data = wav_bytes(rate=0, frames=4000)
    _audio(w, "rate0.wav", data, Expect(Q, "impossible_header"), "audio/rate-zero")


@AUDIO_KINDS.register("audio/zero-channels")
def _zero_channels(w: BatchWriter) -> None:
    data = wav_bytes(channels=0, frames=4000, data=b"\x00\x01" * 4000)
    _audio(w, "ch0.wav", data, Expect(Q, "impossible_header"), "audio/zero-channels")


@AUDIO_KINDS.register("audio/200-channels")
def _many_channels(w: BatchWriter) -> None:
    data = wav_bytes(channels=200, frames=200)
    _audio(w, "ch200.wav", data, Expect(Q, "too_many_channels"), "audio/200-channels")


@AUDIO_KINDS.register("audio/huge-declared-length")
def _huge_length(w: BatchWriter) -> None:
    # The data chunk claims 2 GB; 1.5 s are there.
    pcm = (synth_music(7, seconds=1.5)[:, 0] * 20000).astype("<i2").tobytes()
    data = wav_bytes(frames=0, data=pcm, declared_data_bytes=0x7FFFFFF0)
    _audio(
        w, "huge-length.wav", data, Expect(Q, "truncated_or_corrupt"), "audio/huge-declared-length"
    )


@AUDIO_KINDS.register("audio/header-only")
def _header_only(w: BatchWriter) -> None:
    data = wav_bytes(frames=0, data=b"", declared_data_bytes=44100)
    _audio(w, "header-only.wav", data, Expect(Q, "truncated_or_corrupt"), "audio/header-only")


@AUDIO_KINDS.register("audio/nan-floats")
def _nan(w: BatchWriter) -> None:
    music = synth_music(8, seconds=1.5)
    music[100:200] = np.nan
    sf.write(w.root / "nan.wav", music, 22050, subtype="FLOAT")
    w.csv("audio/nan-floats", "nan.wav", Expect(Q, "truncated_or_corrupt"))


@AUDIO_KINDS.register("audio/inf-floats")
def _inf(w: BatchWriter) -> None:
    music = synth_music(9, seconds=1.5)
    music[50, 1] = np.inf
    sf.write(w.root / "inf.wav", music, 22050, subtype="FLOAT")
    w.csv("audio/inf-floats", "inf.wav", Expect(Q, "truncated_or_corrupt"))


@AUDIO_KINDS.register("audio/text-named-flac")
def _wrong_ext_text(w: BatchWriter) -> None:
    _audio(w, "notes.flac", b"liner notes\n" * 50, Expect(Q, "not_audio"), "audio/text-named-flac")


@AUDIO_KINDS.register("audio/ogg-named-wav")
def _wrong_ext_ogg(w: BatchWriter) -> None:
    # Real audio under the wrong extension: the container is read from the bytes.
    w.music(w.root / "really-ogg.ogg")
    os.rename(w.root / "really-ogg.ogg", w.root / "really-ogg.wav")
    w.csv("audio/ogg-named-wav", "really-ogg.wav", ACCEPTED, valid=True)


@AUDIO_KINDS.register("audio/html-polyglot")
def _polyglot(w: BatchWriter) -> None:
    # A page that is also a WAV further in: not audio from its first byte.
    data = b"<html><script>alert(1)</script>" + wav_bytes()
    _audio(w, "page.wav", data, Expect(Q, "not_audio"), "audio/html-polyglot")


@AUDIO_KINDS.register("audio/gif-polyglot")
def _gif(w: BatchWriter) -> None:
    data = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + wav_bytes()
    _audio(w, "image.mp3", data, Expect(Q, "not_audio"), "audio/gif-polyglot")


@AUDIO_KINDS.register("audio/id3-only")
def _id3_only(w: BatchWriter) -> None:
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    _audio(w, "tag-only.mp3", tag, Expect(Q, "truncated_or_corrupt"), "audio/id3-only")


@AUDIO_KINDS.register("audio/random-bytes")
def _random(w: BatchWriter) -> None:
    data = np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    _audio(w, "noise.ogg", data, Expect(Q, "not_audio"), "audio/random-bytes")


@AUDIO_KINDS.register("audio/silence")
def _silence(w: BatchWriter) -> None:
    sf.write(w.root / "silent.flac", np.zeros((22050 * 2, 2), np.float32), 22050)
    w.csv("audio/silence", "silent.flac", Expect(Q, "all_silence"))


@AUDIO_KINDS.register("audio/too-long-by-header")
def _too_long(w: BatchWriter) -> None:
    data = wav_bytes(rate=8000, frames=8000 * 20)  # 20 s against a 6 s limit
    _audio(w, "long.wav", data, Expect(Q, "too_long"), "audio/too-long-by-header")


@AUDIO_KINDS.register("audio/too-large")
def _too_large(w: BatchWriter) -> None:
    data = wav_bytes(rate=48000, channels=2, frames=48000 * 10)  # 1.9 MB > 1.5 MB
    _audio(w, "big.wav", data, Expect(Q, "too_large"), "audio/too-large")


@AUDIO_KINDS.register("file/fifo")
def _fifo(w: BatchWriter) -> None:
    os.mkfifo(w.root / "fifo.wav")
    os.mkfifo(w.root / "fifo2.wav")
    w.csv("file/fifo", "fifo.wav", Expect(Q, "unreadable"))
    w.csv(
        "file/fifo-local-url",
        f"local://{w.root / 'fifo2.wav'}",
        Expect(Q, "unreadable"),
        locator="fifo2.wav",
    )


@AUDIO_KINDS.register("file/folder")
def _folder(w: BatchWriter) -> None:
    (w.root / "folder.wav").mkdir()
    w.csv("file/folder", "folder.wav", Expect(Q, "unreadable"))


@AUDIO_KINDS.register("file/symlink-out")
def _symlink_out(w: BatchWriter) -> None:
    (w.root / "passwd.wav").symlink_to("/etc/passwd")
    w.csv("file/symlink-out", "passwd.wav", Expect(Q, "symlink_escape"))


@AUDIO_KINDS.register("file/symlink-loop")
def _loop(w: BatchWriter) -> None:
    (w.root / "loop-a.wav").symlink_to(w.root / "loop-b.wav")
    (w.root / "loop-b.wav").symlink_to(w.root / "loop-a.wav")
    w.csv("file/symlink-loop", "loop-a.wav", Expect(Q, "unreadable"))
