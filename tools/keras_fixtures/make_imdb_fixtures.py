#!/usr/bin/env python3
"""Writes tests/fixtures/imdb/: small imdb.npz look-alikes made by real numpy, and what
Keras's own keras.datasets.imdb.load_data makes of them (tests/test_imdb.c compares
lamina's loader with it). There is no imdb.npz on the build machines and nothing is
downloaded: keras.utils.get_file is monkeypatched to return the local file, so Keras's
shuffling, index shift, start/oov characters, maxlen and skip_top all run as they do on
the real file. CI never runs this script, it only reads the committed output:

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_imdb_fixtures.py

Files:
  imdb_small.npz       np.savez of object arrays of int lists (numpy 2's pickle, protocol 4),
                       like Keras's imdb.npz: 1100 train / 260 test reviews, two empty ones,
                       one of 1500 words (pickle's APPENDS batches of 1000 on both levels),
                       word indices up to 88000 (BININT1, BININT2 and BININT opcodes)
  imdb_p2.npz          the first 60 / 40 reviews pickled as Python 2's numpy did (protocol 2,
                       GLOBAL numpy.core.multiarray, SHORT_BINSTRING, dtype('O8', 0, 1))
  imdb_p3.npz, imdb_p5.npz   the same reviews pickled with protocols 3 and 5
  imdb_compressed.npz  np.savez_compressed of the same (deflated members)
  imdb_2d.npz          equal-length reviews, which numpy stores as a 2-D int64 array
  evil_system.npz      x_train's pickle calls os.system (REDUCE of GLOBAL posix.system)
  evil_codecs.npz      protocol 2 as Python 3 writes it: bytes via _codecs.encode, which
                       Keras's restricted unpickler refuses as well
  expected.txt         Keras's outputs, in tests/fixture.h's format: per case, attrs with
                       the file and the options, arrays <split>_len (the sequence
                       lengths), <split> (the concatenated word indices), y_<split>
"""

import io
import os
import pickle
import struct
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import jax  # noqa: E402
from keras.src.datasets import imdb as kimdb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "imdb")


def object_array(seqs):
    a = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        a[i] = list(s)
    return a


def make_reviews(rng, n, long_at=None, empty_at=()):
    seqs = []
    for i in range(n):
        length = int(rng.integers(1, 15))
        if i in empty_at:
            length = 0
        if i == long_at:
            length = 1500
        # Zipf-like word ranks, with a few rare words that need BININT2 / BININT.
        w = np.minimum(rng.zipf(1.4, size=length), 400) - 1
        rare = rng.random(length) < 0.03
        w[rare] = rng.integers(300, 88000, size=int(rare.sum()))
        seqs.append([int(v) for v in w])
    return seqs


def npy_bytes(array, pickled):
    """A .npy image of an object array whose pickle is `pickled` (header as numpy writes it)."""
    buf = io.BytesIO()
    d = np.lib.format.header_data_from_array_1_0(array)
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue() + pickled


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's numpy did: str as SHORT_BINSTRING, dtype args as ints."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("ascii")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype):
            fn, args, state = obj.__reduce__()
            return fn, (args[0], int(args[1]), int(args[2])), state
        return NotImplemented


def py2_pickle(array):
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(array)
    raw = buf.getvalue()
    old = b"cnumpy._core.multiarray\n_reconstruct\n"
    assert old in raw
    return raw.replace(old, b"cnumpy.core.multiarray\n_reconstruct\n")


def write_npz(path, members):
    """members: name -> .npy bytes; stored, as np.savez writes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)


def labels_npy(y):
    buf = io.BytesIO()
    np.save(buf, np.asarray(y, dtype=np.int64))
    return buf.getvalue()


def keras_load(path, **opts):
    kimdb.get_file = lambda *a, **k: path
    return kimdb.load_data(path=path, **opts)


class Writer:
    def __init__(self):
        self.lines = []

    def case(self, name, attrs, result):
        (xtr, ytr), (xte, yte) = result
        self.lines.append(f"case {name}")
        for k, v in attrs.items():
            self.lines.append(f"attr {k} {v}")
        for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
            lens = [len(s) for s in x]
            flat = [int(w) for s in x for w in s]
            for nm, vals in ((f"x_{split}_len", lens), (f"x_{split}", flat), (f"y_{split}", [int(v) for v in y])):
                assert all(abs(v) < (1 << 24) for v in vals)
                self.lines.append(f"shape {nm} 1 {len(vals)}")
                self.lines.append(f"data {nm} {len(vals)}" + "".join(f" {v}" for v in vals))
        self.lines.append("end")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261123)
    train = make_reviews(rng, 1100, long_at=17, empty_at=(3, 700))
    test = make_reviews(rng, 260)
    y_train = rng.integers(0, 2, size=len(train))
    y_test = rng.integers(0, 2, size=len(test))

    main_path = os.path.join(OUT, "imdb_small.npz")
    np.savez(main_path, x_train=object_array(train), y_train=y_train, x_test=object_array(test), y_test=y_test)

    # The variants hold the first reviews only, to stay small.
    vtr, vte = object_array(train[:60]), object_array(test[:40])
    vy = {"y_train": labels_npy(y_train[:60]), "y_test": labels_npy(y_test[:40])}
    assert len(vtr[17]) == 1500  # the long review is in the variants too
    variants = {}
    for proto in (3, 5):
        p = os.path.join(OUT, f"imdb_p{proto}.npz")
        write_npz(p, {"x_train": npy_bytes(vtr, pickle.dumps(vtr, protocol=proto)), "y_train": vy["y_train"],
                      "x_test": npy_bytes(vte, pickle.dumps(vte, protocol=proto)), "y_test": vy["y_test"]})
        variants[f"p{proto}"] = p
    p = os.path.join(OUT, "imdb_p2.npz")
    write_npz(p, {"x_train": npy_bytes(vtr, py2_pickle(vtr)), "y_train": vy["y_train"],
                  "x_test": npy_bytes(vte, py2_pickle(vte)), "y_test": vy["y_test"]})
    variants["p2"] = p
    p = os.path.join(OUT, "imdb_compressed.npz")
    np.savez_compressed(p, x_train=vtr, y_train=y_train[:60], x_test=vte, y_test=y_test[:40])
    variants["compressed"] = p
    p = os.path.join(OUT, "imdb_2d.npz")
    np.savez(p, x_train=np.array([s[:4] + [5] * (4 - len(s[:4])) for s in train[:30]], dtype=np.int64),
             y_train=y_train[:30], x_test=np.array([s[:4] + [6] * (4 - len(s[:4])) for s in test[:20]], dtype=np.int64),
             y_test=y_test[:20])
    variants["2d"] = p

    # Hostile files: Keras refuses both; so must lamina.
    small_x = object_array([[1, 2], [3]])

    class System:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = pickle.dumps(System(), protocol=2)
    write_npz(os.path.join(OUT, "evil_system.npz"), {"x_train": npy_bytes(small_x, evil), "y_train": labels_npy([0, 1]),
                                                      "x_test": npy_bytes(small_x, evil), "y_test": labels_npy([0, 1])})
    codecs = pickle.dumps(small_x, protocol=2)
    assert b"_codecs" in codecs
    write_npz(os.path.join(OUT, "evil_codecs.npz"), {"x_train": npy_bytes(small_x, codecs), "y_train": labels_npy([0, 1]),
                                                      "x_test": npy_bytes(small_x, codecs), "y_test": labels_npy([0, 1])})
    for name in ("evil_system.npz", "evil_codecs.npz"):
        try:
            keras_load(os.path.join(OUT, name))
        except pickle.UnpicklingError as e:
            print(f"{name}: Keras refuses it: {e}")
        else:
            sys.exit(f"{name}: Keras loaded it")

    w = Writer()
    cases = [
        ("default", {}),
        ("num_words_skip_top", {"num_words": 100, "skip_top": 5}),
        ("maxlen", {"maxlen": 10}),
        ("no_start_no_oov", {"start_char": None, "oov_char": None, "index_from": 0, "num_words": 50}),
        ("zeros", {"seed": 0, "start_char": 0, "oov_char": 0, "index_from": 1, "num_words": 60, "skip_top": 2}),
        ("big_seed", {"seed": 2**32 - 1, "maxlen": 6, "num_words": 30}),
    ]
    for name, opts in cases:
        attrs = {"file": "imdb_small.npz"}
        attrs.update({k: ("None" if v is None else v) for k, v in opts.items()})
        w.case(f"imdb/{name}", attrs, keras_load(main_path, **opts))
    for name, path in variants.items():
        w.case(f"imdb/{name}", {"file": os.path.basename(path)}, keras_load(path))
        if name != "2d":  # the variants hold the same reviews, so Keras agrees on them
            a, b = keras_load(path), keras_load(variants["p3"])
            assert all(list(map(list, a[i][0])) == list(map(list, b[i][0])) for i in range(2))
    try:
        keras_load(main_path, maxlen=2)
        sys.exit("maxlen=2 should leave nothing")
    except ValueError as e:
        print(f"maxlen=2: {e}")

    header = [
        "# What keras.datasets.imdb.load_data makes of the imdb*.npz files beside this one.",
        "# Generated by tools/keras_fixtures/make_imdb_fixtures.py; do not edit by hand.",
        f"# keras {keras.__version__}, backend {keras.backend.backend()} (jax {jax.__version__}), "
        f"numpy {np.__version__}, python {sys.version.split()[0]}",
        "# Format: tests/fixture.h (case / attr / shape / data / end). Attrs: file, and the",
        "# load_data options given (None written as None). Arrays per split: x_<split>_len (the",
        "# sequence lengths), x_<split> (their word indices, concatenated), y_<split> (labels).",
    ]
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("\n".join(header + w.lines) + "\n")
    for name in sorted(os.listdir(OUT)):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")


if __name__ == "__main__":
    main()
