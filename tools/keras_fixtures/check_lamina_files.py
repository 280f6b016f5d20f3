#!/usr/bin/env python3
"""Has real Keras 3 read the files lamina writes, and records what it predicts.

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/check_lamina_files.py \
        --build build/debug [--update]

Runs <build>/tests/test_saving with LAMINA_SAVING_OUT set, so that it writes lamina's files
(for each model of lamina_models in tests/test_saving.c, the chapter's models among them:
<name>.keras, the legacy <name>.h5, and a weights file, <name>.weights.h5 or the legacy
<name>_weights.h5) with <name>.npz (inputs x*,
targets y*, lamina's predictions p*, and q*, lamina's predictions after one more training
step from the saved state, for models without dropout). Then Keras:
  - loads each .keras and .h5 with keras.models.load_model, and each weights file into the
    model of the .keras configuration with load_weights, and predicts: lamina's p*;
  - resumes training from the .keras file (its optimizer state: iteration count, slots)
    for one train_on_batch on (x, y): lamina's q*.
Failures exit non-zero. With --update, the files and Keras's predictions (k*, with the
inputs) go to tests/fixtures/saving/lamina, which test_saving.c re-checks without Python;
the members of the .keras files are deflated there to keep them small (lamina stores them,
as Keras does; both read either).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "saving", "lamina")


def model_files(work):
    """{name: [.keras, .h5, weights file]} for each <name>.npz that the test wrote."""
    out = {}
    for npz in sorted(f for f in os.listdir(work) if f.endswith(".npz")):
        name = npz[:-4]
        weights = [w for w in (name + ".weights.h5", name + "_weights.h5") if os.path.exists(os.path.join(work, w))]
        files = [name + ".keras", name + ".h5"] + weights[:1]
        missing = [f for f in files if not os.path.exists(os.path.join(work, f))]
        if len(files) != 3 or missing:
            sys.exit(f"{name}: test_saving wrote {name}.npz without its files ({missing or 'no weights file'})")
        out[name] = files
    if not out:
        sys.exit(f"test_saving wrote no files to {work}")
    return out


def deflate(src, dst):
    """Copies a zip file with its members deflated."""
    with zipfile.ZipFile(src) as z:
        members = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in members:
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def arrays(z, prefix):
    out, i = [], 0
    while f"{prefix}{i}" in z:
        out.append(z[f"{prefix}{i}"])
        i += 1
    return out


def as_list(v):
    return [np.asarray(a) for a in (v if isinstance(v, list) else [v])]


def close(got, want, rtol, atol, what):
    for i, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape or not np.allclose(g, w, rtol=rtol, atol=atol):
            err = np.max(np.abs(g - w)) if g.shape == w.shape else "shape"
            sys.exit(f"{what}, output {i}: Keras and lamina differ (max abs difference {err})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="a lamina build directory (with tests/test_saving)")
    ap.add_argument("--update", action="store_true", help="write the fixtures")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="lamina_files_")
    env = dict(os.environ, LAMINA_SAVING_OUT=work, LAMINA_TEST_FILTER="test_lamina_files", LAMINA_SOURCE_DIR=ROOT)
    # The test also checks the committed fixtures, which may be out of date when updating.
    subprocess.run([os.path.join(args.build, "tests", "test_saving")], env=env, stdout=subprocess.DEVNULL,
                   check=not args.update)
    for name, files in model_files(work).items():
        z = dict(np.load(os.path.join(work, name + ".npz")))
        xs, ys, ps, qs = arrays(z, "x"), arrays(z, "y"), arrays(z, "p"), arrays(z, "q")
        x = xs if len(xs) > 1 else xs[0]
        config = zipfile.ZipFile(os.path.join(work, files[0])).read("config.json").decode()
        keras_pred = None
        for f in files:
            path = os.path.join(work, f)
            keras.utils.clear_session()
            if "weights" in f:
                m = keras.models.model_from_json(json.dumps({k: v for k, v in json.loads(config).items()
                                                             if k != "compile_config"}))
                m.load_weights(path)
            else:
                m = keras.models.load_model(path)
            pred = as_list(m.predict(x, verbose=0))
            close(pred, ps, 1e-5, 1e-6, f"{f}: predictions")
            if keras_pred is None:
                keras_pred = pred
            print(f"{f}: Keras predicts what lamina predicts", file=sys.stderr)
        if qs:
            keras.utils.clear_session()
            m = keras.models.load_model(os.path.join(work, files[0]))
            m.train_on_batch(x, ys if len(ys) > 1 else ys[0])
            # One RMSprop step divides by the root of small velocities, which magnifies the
            # libraries' float32 rounding differences to ~1e-4; a fresh optimizer state
            # instead of the saved one misses by ~0.4, so this still pins the state down.
            close(as_list(m.predict(x, verbose=0)), qs, 1e-3, 3e-4, f"{files[0]}: after resuming training")
            print(f"{files[0]}: training resumed in Keras matches lamina's", file=sys.stderr)
        if args.update:
            os.makedirs(OUT, exist_ok=True)
            for f in files:
                (deflate if f.endswith(".keras") else shutil.copy)(os.path.join(work, f), os.path.join(OUT, f))
            keep = {f"x{i}": a for i, a in enumerate(xs)}
            keep.update({f"k{i}": a.astype("float32") for i, a in enumerate(keras_pred)})
            np.savez(os.path.join(OUT, name + ".npz"), **keep)
    if args.update:
        with open(os.path.join(OUT, "README"), "w") as f:
            f.write("Written by lamina (tests/test_saving.c), read by keras "
                    f"{keras.__version__} ({keras.backend.backend()} backend) in "
                    "tools/keras_fixtures/check_lamina_files.py; k* are Keras's predictions.\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
