"""Record reference outputs of the original musicnn (TensorFlow) MSD_vgg tagger.

One-off script, the MSD_vgg companion of record_reference.py (same clips, same throwaway
virtualenv, same versions). It is NOT run by the project or by CI, and nothing imports it.

Exact commands (from the repository root):
    python3.11 -m venv /tmp/tfref
    /tmp/tfref/bin/pip install "tensorflow-cpu==2.15.*" "numpy<2" "librosa==0.10.*" soundfile
    /tmp/tfref/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfref/bin/python tests/training/data/musicnn/record_vgg_reference.py

It reuses the committed FLAC clips (record_reference.py --remake-clips makes them).

What it writes, beside this file:
    vgg_reference.npz
        float32 arrays keyed "<clip>/<name>":
        taggram [3, 50]                    sigmoid tag probabilities per 3 s patch
        pool5 [3, 2, 1, 128]               the last pooled map (flattened, the tag layer's input)
        pool4 [3, 11, 6, 128]              every patch
        pool3_patch0 [23, 12, 128]         patch 0 only (keeps the file small)
        pool1_mean, pool1_max [3, 128]     per-channel mean / max over time and frequency
        pool2_mean, pool2_max [3, 128]     of the two large early maps
        Maps are [time, frequency, channels] as TensorFlow lays them out.
    vgg_reference.json
        versions, per clip the top-5 tags (taggram averaged over patches), array shapes,
        sha256 of the clips and of the MSD_vgg checkpoint files, self-checks.
    vgg_checkpoint_variables.txt
        name and shape of every variable in the MSD_vgg TF checkpoint.

Everything goes through musicnn's own extractor(path, model="MSD_vgg", input_length=3,
input_overlap=False, extract_features=True). Unlike the musicnn branch, extractor()'s
loop over later batches unpacks and concatenates the same variables for the vgg models,
so its BATCH_SIZE = 1 output is correct; the script still checks it against a run with
all patches in one batch. extractor() also swallows restore errors (and for MSD_vgg
claims the model "is still training"), so the checkpoint is first restored into an
identically built graph here, loudly.
"""

from __future__ import annotations

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
MODEL = "MSD_vgg"
CLIPS = {
    "synthetic": "synthetic.flac",
    "wesnoth_traveling_minstrels": "wesnoth_traveling_minstrels.flac",
    "hyperrogue_crossroads": "hyperrogue_crossroads.flac",
}
# extractor() squeezes each batch's maps; these are the per-patch shapes to restore.
PATCH_SHAPES = {
    "pool1": (92, 48, 128),
    "pool2": (46, 24, 128),
    "pool3": (23, 12, 128),
    "pool4": (11, 6, 128),
    "pool5": (2, 1, 128),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checked_restore(tf, models, config, ckpt_dir: str) -> None:
    """Build the MSD_vgg graph exactly as extractor() does and restore it, loudly."""
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        models.define_model(x, is_training, MODEL, len(config.MSD_LABELS))
    shape_map = tf.compat.v1.train.NewCheckpointReader(ckpt_dir).get_variable_to_shape_map()
    ckpt = {k: list(v) for k, v in shape_map.items()}
    graph_vars = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    missing = sorted(set(graph_vars) - set(ckpt))
    bad = sorted(k for k in graph_vars if k in ckpt and list(ckpt[k]) != graph_vars[k])
    if missing or bad:
        sys.exit(f"graph/checkpoint mismatch: missing={missing} bad_shapes={bad}")
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, ckpt_dir)
    print(f"checkpoint restores cleanly: {len(graph_vars)} graph variables")
    tf.compat.v1.reset_default_graph()


def run_extractor(extractor_mod, config, path: Path, batch_size: int):
    old = config.BATCH_SIZE
    config.BATCH_SIZE = batch_size
    try:
        taggram, tags, feats = extractor_mod.extractor(
            str(path), model=MODEL, input_length=3, input_overlap=False, extract_features=True
        )
    finally:
        config.BATCH_SIZE = old
    n = taggram.shape[0]
    maps = {k: np.asarray(feats[k]).reshape(n, *shape) for k, shape in PATCH_SHAPES.items()}
    return taggram, tags, maps


def main() -> None:
    import musicnn
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import extractor as extractor_mod
    from musicnn import models

    pkg_dir = Path(musicnn.__file__).resolve().parent
    ckpt_dir = str(pkg_dir / MODEL) + "/"
    from importlib.metadata import version

    reader = tf.compat.v1.train.NewCheckpointReader(ckpt_dir)
    shape_map = reader.get_variable_to_shape_map()
    lines = [f"{k}\t{list(shape_map[k])}" for k in sorted(shape_map)]
    (HERE / "vgg_checkpoint_variables.txt").write_text(
        f"# Variables of the TF checkpoint musicnn/{MODEL}/ in musicnn==0.1.0, read with\n"
        "# tf.compat.v1.train.NewCheckpointReader(<prefix>); one 'name<TAB>shape' a line.\n"
        "# '*/Adam', '*/Adam_1', 'beta1_power', 'beta2_power' are optimiser state.\n"
        "# Conv kernels are [kh(time), kw(freq), in, out]; dense [in, out].\n"
        + "\n".join(lines)
        + "\n"
    )
    checked_restore(tf, models, config, ckpt_dir)

    labels = list(config.MSD_LABELS)
    arrays: dict[str, np.ndarray] = {}
    per_clip: dict[str, dict] = {}
    for name, fname in CLIPS.items():
        path = HERE / fname
        taggram, tags, maps = run_extractor(extractor_mod, config, path, config.BATCH_SIZE)
        assert list(tags) == labels
        taggram_b, _, maps_b = run_extractor(extractor_mod, config, path, 1024)
        checks = {"taggram": float(np.max(np.abs(taggram - taggram_b)))}
        checks.update({k: float(np.max(np.abs(maps[k] - maps_b[k]))) for k in maps})
        print(f"{name}: patches={taggram.shape[0]} max|batch1-batched|={checks}")
        if max(checks.values()) > 1e-4:
            sys.exit(f"{name}: the two extractor() runs disagree: {checks}")
        if not np.all(np.isfinite(taggram)):
            sys.exit(f"{name}: non-finite taggram")

        arrays[f"{name}/taggram"] = taggram.astype(np.float32)
        arrays[f"{name}/pool5"] = maps["pool5"].astype(np.float32)
        arrays[f"{name}/pool4"] = maps["pool4"].astype(np.float32)
        arrays[f"{name}/pool3_patch0"] = maps["pool3"][0].astype(np.float32)
        for k in ("pool1", "pool2"):
            arrays[f"{name}/{k}_mean"] = maps[k].mean(axis=(1, 2)).astype(np.float32)
            arrays[f"{name}/{k}_max"] = maps[k].max(axis=(1, 2)).astype(np.float32)

        mean_tags = taggram.mean(axis=0)
        order = np.argsort(-mean_tags)[:5]
        per_clip[name] = {
            "file": fname,
            "sha256": sha256(path),
            "n_patches": int(taggram.shape[0]),
            "top5_mean_over_patches": [[labels[i], round(float(mean_tags[i]), 6)] for i in order],
            "max_abs_diff_batch1_vs_batched": checks,
        }
        print(f"{name}: top5 {per_clip[name]['top5_mean_over_patches']}")

    np.savez_compressed(HERE / "vgg_reference.npz", **arrays)
    ref = {
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "soundfile": sf.__version__,
            "musicnn": version("musicnn"),
        },
        "extractor": {"model": MODEL, "input_length": 3, "input_overlap": False},
        "checkpoint_sha256": {
            f"{MODEL}/{f}": sha256(pkg_dir / MODEL / f) for f in (".data-00000-of-00001", ".index")
        },
        "arrays": {k: list(v.shape) for k, v in arrays.items()},
        "clips": per_clip,
    }
    (HERE / "vgg_reference.json").write_text(json.dumps(ref, indent=2) + "\n")
    size = (HERE / "vgg_reference.npz").stat().st_size
    print(f"wrote vgg_reference.npz ({size} bytes), vgg_reference.json")


if __name__ == "__main__":
    main()
