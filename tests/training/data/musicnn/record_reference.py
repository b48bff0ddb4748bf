"""Record reference outputs of the original musicnn (TensorFlow) MSD_musicnn tagger.

One-off script. It is NOT run by the project or by CI, and nothing in the project imports it:
TensorFlow is needed only here, in a throwaway virtualenv outside the repository.

Versions used for the committed fixtures (see reference.json for the exact record):
    Python 3.11.7, tensorflow-cpu 2.15.1, numpy 1.26.4, librosa 0.10.2.post1,
    soundfile 0.14.0, soxr 1.1.0, musicnn 0.1.0 (PyPI wheel, ISC licence).

Exact commands (from the repository root):
    python3.11 -m venv /tmp/tfref
    /tmp/tfref/bin/pip install "tensorflow-cpu==2.15.*" "numpy<2" "librosa==0.10.*" soundfile
    /tmp/tfref/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfref/bin/python tests/training/data/musicnn/record_reference.py --remake-clips

Without --remake-clips the committed FLAC clips are reused as they are (the real-music
excerpts need the Debian packages wesnoth-1.16-music and hyperrogue-music to be remade).

What it writes, beside this file:
    synthetic.flac, wesnoth_traveling_minstrels.flac, hyperrogue_crossroads.flac
        16 kHz mono 16-bit FLAC, 9.0 s each (144000 samples -> 563 mel frames -> 3 patches).
    reference.npz
        float32 arrays keyed "<clip>/<name>", see README.md for the list and shapes.
    reference.json
        versions, the MSD label list, per clip the top-5 tags (taggram averaged over
        patches), array shapes and sha256 of the clips and of the checkpoint files.
    checkpoint_variables.txt
        name and shape of every variable in the MSD_musicnn TF checkpoint.

Everything goes through musicnn's own code: musicnn.extractor.extractor(...) for the model
outputs and musicnn.extractor.batch_data(...) for the input spectrogram. Nothing in musicnn is
patched. Two things are worth knowing (both documented in README.md):

* extractor() swallows checkpoint restore errors (bare ``except:``); a failed restore would
  silently give randomly initialised weights. This script therefore restores the checkpoint
  itself into an identically built graph first and fails loudly if that does not work, and
  checks that two independent extractor() runs give the same outputs.
* extractor() has a bug for penultimate and the mid-end features cnn1/cnn2/cnn3: for every
  batch after the first it concatenates the FIRST batch's values again (it unpacks into
  midend1_/.../backend_ but concatenates cnn1_/.../penultimate_). With musicnn's
  BATCH_SIZE = 1 every patch after the first gets patch 0's values. taggram, mean_pool,
  max_pool, timbral and temporal are not affected. To record correct penultimate/cnn1-3 this
  script runs extractor() a second time with musicnn.configuration.BATCH_SIZE raised so that
  all patches go through in one batch (a runtime setting, restored afterwards), checks that
  this run reproduces the first run's taggram/pools/timbral/temporal on every patch and
  penultimate/cnn1-3 on patch 0, and stores penultimate/cnn1-3 from it.
* tf.train.list_variables(<dir>) cannot read the checkpoint (see below); it is read by prefix.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import librosa
import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
SR = 16000
CLIP_SECONDS = 9.0
CLIP_SAMPLES = int(SR * CLIP_SECONDS)  # 144000 -> 1 + 144000 // 256 = 563 frames

WESNOTH_SRC = Path("/usr/share/games/wesnoth/1.16/data/core/music/traveling_minstrels.ogg")
HYPERROGUE_SRC = Path("/usr/share/hyperrogue/music/hr3-crossroads.ogg")

CLIPS = {
    "synthetic": "synthetic.flac",
    "wesnoth_traveling_minstrels": "wesnoth_traveling_minstrels.flac",
    "hyperrogue_crossroads": "hyperrogue_crossroads.flac",
}

# Per-frame feature maps kept per clip (all patches, time-concatenated as extractor() returns
# them); with np.savez_compressed the whole file stays well under 3 MB.
FULL_KEYS = ("timbral", "temporal")
CNN_KEYS = ("cnn1", "cnn2", "cnn3")


# --------------------------------------------------------------------------- clips


def synthetic_music(
    seed: int = 20240601, sr: int = SR, seconds: float = CLIP_SECONDS
) -> np.ndarray:
    """Deterministic synthetic 'song': plucked harmonic chords, a bass line and noise drums.

    120 BPM, 4/4, chord progression C - Am - F - G (one chord per bar of 4 beats, i.e. 2 s),
    chord tones re-struck on every beat, bass on beats 1 and 3, kick on 1 and 3, snare on
    2 and 4, closed hi-hat on every eighth note. Peak-normalised to 0.7.
    """
    rng = np.random.default_rng(seed)
    n = int(round(sr * seconds))
    out = np.zeros(n, dtype=np.float64)
    beat = 0.5  # seconds, 120 BPM

    def midi_hz(m: float) -> float:
        return 440.0 * 2.0 ** ((m - 69) / 12.0)

    def tone(f0: float, dur: float, n_harm: int, decay: float, amp: float) -> np.ndarray:
        m = int(round(dur * sr))
        t = np.arange(m) / sr
        wave = np.zeros(m)
        for k in range(1, n_harm + 1):
            fk = f0 * k
            if fk >= sr / 2 - 200:
                break
            # harmonic partials with 1/k roll-off and random phase
            wave += np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi)) / k
        attack = np.minimum(1.0, t / 0.01)
        env = attack * np.exp(-t / decay)
        release = np.minimum(1.0, (dur - t) / 0.02)  # avoid clicks at the note end
        return amp * wave * env * np.clip(release, 0.0, 1.0)

    def add(sig: np.ndarray, start_s: float) -> None:
        i = int(round(start_s * sr))
        if i >= n:
            return
        j = min(n, i + len(sig))
        out[i:j] += sig[: j - i]

    # chords as MIDI notes (middle register) and bass roots
    progression = [
        ([60, 64, 67], 36),  # C
        ([57, 60, 64], 33),  # Am
        ([53, 57, 60], 29),  # F
        ([55, 59, 62], 31),  # G
    ]
    n_beats = int(np.ceil(seconds / beat))
    for b in range(n_beats):
        bar, pos = divmod(b, 4)
        chord, root = progression[bar % len(progression)]
        start = b * beat
        for m in chord:
            add(tone(midi_hz(m), beat, n_harm=12, decay=0.35, amp=0.12), start)
        if pos in (0, 2):
            add(tone(midi_hz(root), 2 * beat, n_harm=6, decay=0.6, amp=0.25), start)
        # melody: a chord tone one octave up on the off-beat
        add(
            tone(midi_hz(chord[(b * 2) % 3] + 12), beat / 2, n_harm=8, decay=0.15, amp=0.08),
            start + beat / 2,
        )

        # drums
        if pos in (0, 2):  # kick: pitch-swept sine + a little noise
            m = int(0.25 * sr)
            t = np.arange(m) / sr
            freq = 45 + 90 * np.exp(-t / 0.03)
            phase = 2 * np.pi * np.cumsum(freq) / sr
            kick = np.sin(phase) * np.exp(-t / 0.08) + 0.1 * rng.standard_normal(m) * np.exp(
                -t / 0.01
            )
            add(0.6 * kick, start)
        else:  # snare: noise burst, crude band emphasis by first differencing
            m = int(0.2 * sr)
            t = np.arange(m) / sr
            noise = rng.standard_normal(m + 1)
            noise = np.diff(noise) * 0.5
            body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.04)
            add(0.3 * (noise * np.exp(-t / 0.05)) + 0.2 * body, start)
        for h in (0.0, beat / 2):  # hi-hat: high-passed (twice differenced) short noise
            m = int(0.05 * sr)
            t = np.arange(m) / sr
            noise = np.diff(rng.standard_normal(m + 2), n=2) * 0.25
            add(0.12 * noise * np.exp(-t / 0.012), start + h)

    out *= 0.7 / np.max(np.abs(out))
    return out.astype(np.float32)


def excerpt(src: Path, seconds: float = CLIP_SECONDS) -> tuple[np.ndarray, dict]:
    """`seconds` from the middle of `src`, mixed to mono, resampled to 16 kHz (soxr_hq)."""
    info = sf.info(str(src))
    n = int(round(seconds * info.samplerate))
    start = info.frames // 2 - n // 2
    data, sr_native = sf.read(
        str(src), start=start, stop=start + n, dtype="float32", always_2d=True
    )
    mono = data.mean(axis=1)
    y = librosa.resample(mono, orig_sr=sr_native, target_sr=SR, res_type="soxr_hq")
    y = y[:CLIP_SAMPLES]
    with sf.SoundFile(str(src)) as f:
        meta = f.copy_metadata()
    return y.astype(np.float32), {
        "source": str(src),
        "source_samplerate": sr_native,
        "source_channels": info.channels,
        "source_seconds": round(info.frames / info.samplerate, 3),
        "start_sample": int(start),
        "start_seconds": round(start / sr_native, 4),
        "seconds": seconds,
        "tags": meta,
    }


def write_flac(path: Path, y: np.ndarray) -> int:
    """Write 16-bit FLAC; returns the number of samples that had to be clipped."""
    hi = 32767 / 32768
    clipped = int(np.sum((y > hi) | (y < -1.0)))
    sf.write(str(path), np.clip(y, -1.0, hi), SR, subtype="PCM_16", format="FLAC")
    return clipped


def make_clips() -> dict:
    sources: dict[str, dict] = {}
    y = synthetic_music()
    sources["synthetic"] = {
        "source": "synthetic_music(seed=20240601) in record_reference.py",
        "clipped_samples": write_flac(HERE / CLIPS["synthetic"], y),
    }
    for name, src in (
        ("wesnoth_traveling_minstrels", WESNOTH_SRC),
        ("hyperrogue_crossroads", HYPERROGUE_SRC),
    ):
        if not src.exists():
            sys.exit(f"missing {src}: install the Debian music packages first")
        y, meta = excerpt(src)
        meta["clipped_samples"] = write_flac(HERE / CLIPS[name], y)
        sources[name] = meta
    for name, meta in sources.items():
        print(f"wrote {CLIPS[name]}: {meta}")
    return sources


# --------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checked_restore(tf, models, config, ckpt_dir: str) -> None:
    """Build the MSD_musicnn graph exactly as extractor() does and restore it, loudly."""
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        models.define_model(x, is_training, "MSD_musicnn", len(config.MSD_LABELS))
    shape_map = tf.compat.v1.train.NewCheckpointReader(ckpt_dir).get_variable_to_shape_map()
    ckpt = {k: list(v) for k, v in shape_map.items()}
    graph_vars = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    missing = sorted(set(graph_vars) - set(ckpt))
    unused = sorted(set(ckpt) - set(graph_vars))
    bad = sorted(k for k in graph_vars if k in ckpt and list(ckpt[k]) != graph_vars[k])
    if missing or bad:
        sys.exit(f"graph/checkpoint mismatch: missing={missing} bad_shapes={bad}")
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, ckpt_dir)
    print(
        f"checkpoint restores cleanly: {len(graph_vars)} graph variables "
        f"({len(unused)} checkpoint entries not in the graph: {unused})"
    )
    tf.compat.v1.reset_default_graph()


def run_extractor(extractor_mod, config, path: Path, batch_size: int):
    old = config.BATCH_SIZE
    config.BATCH_SIZE = batch_size
    try:
        return extractor_mod.extractor(
            str(path),
            model="MSD_musicnn",
            input_length=3,
            input_overlap=False,
            extract_features=True,
        )
    finally:
        config.BATCH_SIZE = old


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--remake-clips",
        action="store_true",
        help="regenerate the FLAC clips (else reuse the committed ones)",
    )
    args = ap.parse_args()

    sources_path = HERE / "clip_sources.json"
    if args.remake_clips or not all((HERE / f).exists() for f in CLIPS.values()):
        sources = make_clips()
        sources_path.write_text(json.dumps(sources, indent=2, sort_keys=True) + "\n")
    sources = json.loads(sources_path.read_text())

    import musicnn
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import extractor as extractor_mod
    from musicnn import models

    pkg_dir = Path(musicnn.__file__).resolve().parent
    ckpt_dir = str(pkg_dir / "MSD_musicnn") + "/"  # same prefix extractor() restores from
    try:
        from importlib.metadata import version

        musicnn_version = version("musicnn")
    except Exception:  # pragma: no cover
        musicnn_version = "unknown"

    # Checkpoint variable list. tf.train.list_variables(<dir>) does not work here: given a
    # directory it follows the 'checkpoint' index file, which points to the author's machine
    # (/home/jpons/...). Read the checkpoint by its prefix instead, as Saver.restore does.
    reader = tf.compat.v1.train.NewCheckpointReader(ckpt_dir)
    shape_map = reader.get_variable_to_shape_map()
    ckpt_vars = [(k, shape_map[k]) for k in sorted(shape_map)]
    lines = [f"{name}\t{list(shape)}" for name, shape in ckpt_vars]
    (HERE / "checkpoint_variables.txt").write_text(
        "# Variables of the TF checkpoint musicnn/MSD_musicnn/ in musicnn==0.1.0, read with\n"
        "# tf.compat.v1.train.NewCheckpointReader(<prefix>); one 'name<TAB>shape' a line.\n"
        "# '*/Adam', '*/Adam_1', 'beta1_power', 'beta2_power' are optimiser state, not used\n"
        "# for inference. Conv kernels are [kh(time), kw(freq), in, out]; dense [in, out].\n"
        + "\n".join(lines)
        + "\n"
    )
    print("\n".join(lines))

    checked_restore(tf, models, config, ckpt_dir)

    n_frames = (
        int(
            librosa.time_to_frames(
                3, sr=config.SR, n_fft=config.FFT_SIZE, hop_length=config.FFT_HOP
            )
        )
        + 1
    )
    labels = list(config.MSD_LABELS)
    arrays: dict[str, np.ndarray] = {}
    per_clip: dict[str, dict] = {}

    for name, fname in CLIPS.items():
        path = HERE / fname
        # musicnn's own input representation (float16-quantised mel, then log10(10000 x + 1))
        batch, audio_rep = extractor_mod.batch_data(str(path), n_frames, n_frames)

        taggram, tags, feats = run_extractor(extractor_mod, config, path, config.BATCH_SIZE)
        assert list(tags) == labels
        # second run, all patches in one batch: correct cnn1/cnn2/cnn3 (see module docstring)
        taggram_b, _, feats_b = run_extractor(extractor_mod, config, path, 1024)

        n_patches = batch.shape[0]
        shapes_as_returned = {"taggram": list(taggram.shape)}
        shapes_as_returned.update({k: list(np.shape(v)) for k, v in feats.items()})
        # keys extractor() concatenates correctly: both runs must agree on every patch
        checks = {"taggram": float(np.max(np.abs(taggram - taggram_b)))}
        for k in ("mean_pool", "max_pool", "timbral", "temporal"):
            checks[k] = float(
                np.max(np.abs(feats[k] - np.asarray(feats_b[k]).reshape(np.shape(feats[k]))))
            )
        # keys hit by the extractor() bug (stale variables after the first batch): the
        # batched run is correct; the BATCH_SIZE=1 run must agree on patch 0 and repeat it
        fixed = {}
        bug_repeats_patch0 = {}
        for k, per in (
            ("penultimate", 1),
            ("cnn1", n_frames),
            ("cnn2", n_frames),
            ("cnn3", n_frames),
        ):
            good = np.asarray(feats_b[k]).reshape(np.shape(feats[k]))
            fixed[k] = good
            checks[f"{k}_patch0"] = float(np.max(np.abs(feats[k][:per] - good[:per])))
            bug_repeats_patch0[k] = bool(
                all(
                    np.array_equal(feats[k][p * per : (p + 1) * per], feats[k][:per])
                    for p in range(n_patches)
                )
            )
        print(
            f"{name}: patches={n_patches} max|run1-run2|={checks} "
            f"extractor-bug-repeats-patch0={bug_repeats_patch0}"
        )
        tol = 1e-4
        if max(checks.values()) > tol:
            sys.exit(f"{name}: the two extractor() runs disagree: {checks}")
        if not np.all(np.isfinite(taggram)):
            sys.exit(f"{name}: non-finite taggram")

        arrays[f"{name}/audio_rep"] = audio_rep.astype(np.float32)
        arrays[f"{name}/taggram"] = taggram.astype(np.float32)
        arrays[f"{name}/mean_pool"] = np.asarray(feats["mean_pool"], dtype=np.float32)
        arrays[f"{name}/max_pool"] = np.asarray(feats["max_pool"], dtype=np.float32)
        arrays[f"{name}/penultimate"] = fixed["penultimate"].astype(np.float32)
        for k in FULL_KEYS:
            arrays[f"{name}/{k}"] = np.asarray(feats[k], dtype=np.float32)
        for k in CNN_KEYS:
            arrays[f"{name}/{k}"] = fixed[k].astype(np.float32)

        mean_tags = taggram.mean(axis=0)
        order = np.argsort(-mean_tags)[:5]
        per_clip[name] = {
            "file": fname,
            "sha256": sha256(path),
            "samples": int(sf.info(str(path)).frames),
            "audio_rep_frames": int(audio_rep.shape[0]),
            "audio_rep_dtype_from_batch_data": str(audio_rep.dtype),
            "n_patches": int(n_patches),
            "top5_mean_over_patches": [[labels[i], round(float(mean_tags[i]), 6)] for i in order],
            "shapes_as_returned_by_extractor": shapes_as_returned,
            "extractor_bug_repeats_patch0": bug_repeats_patch0,
            "max_abs_diff_batch1_vs_batched": checks,
            "source": sources.get(name, {}),
        }
        print(f"{name}: top5 {per_clip[name]['top5_mean_over_patches']}")

    np.savez_compressed(HERE / "reference.npz", **arrays)
    ckpt_files = {}
    for f in (".data-00000-of-00001", ".index"):
        ckpt_files[f"MSD_musicnn/{f}"] = sha256(pkg_dir / "MSD_musicnn" / f)
    ref = {
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "soundfile": sf.__version__,
            "musicnn": musicnn_version,
        },
        "musicnn_config": {
            "SR": config.SR,
            "FFT_HOP": config.FFT_HOP,
            "FFT_SIZE": config.FFT_SIZE,
            "N_MELS": config.N_MELS,
            "BATCH_SIZE": config.BATCH_SIZE,
            "n_frames": n_frames,
            "model": "MSD_musicnn",
            "input_length": 3,
            "input_overlap": False,
        },
        "checkpoint_sha256": ckpt_files,
        "labels": labels,
        "arrays": {k: list(v.shape) for k, v in arrays.items()},
        "clips": per_clip,
    }
    (HERE / "reference.json").write_text(json.dumps(ref, indent=2) + "\n")
    size = (HERE / "reference.npz").stat().st_size
    print(f"wrote reference.npz ({size} bytes), reference.json")


if __name__ == "__main__":
    main()
