#!/usr/bin/env python3
"""Writes tests/fixtures/npy/: small .npy and .npz files made by real numpy, which
tests/test_npy.c reads (and, for the float32 / int32 ones, compares byte for byte with what
lm_save_npy writes). CI never runs this script; it only reads the committed files.

    /opt/keras-venv/bin/python tools/make_npy_fixtures.py

Values are small integers and halves, exact in every dtype used.
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "npy")


def main():
    os.makedirs(OUT, exist_ok=True)
    f4 = (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3)
    i4 = np.array([3, -1, 0, 2147483647, -2147483648], dtype=np.int32)
    files = {
        "f4_2x3.npy": f4,
        "i4_5.npy": i4,
        "f4_scalar.npy": np.float32(2.5),
        "f4_1x2x3x4.npy": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4),
        "f8_2x2.npy": np.array([[1.5, -2.0], [1e-3, 3e38]], dtype=np.float64),
        "i8_3.npy": np.array([-5, 0, 7], dtype=np.int64),
        "i8_big.npy": np.array([1, 2**40], dtype=np.int64),
        "u1_4.npy": np.array([0, 1, 200, 255], dtype=np.uint8),
        "b1_3.npy": np.array([True, False, True]),
        "i2_2.npy": np.array([-300, 300], dtype=np.int16),
        "be_f4_3.npy": np.array([1.0, -2.5, 4.0], dtype=">f4"),
        "fortran_2x3.npy": np.asfortranarray(f4),
        "empty_0.npy": np.zeros((0,), dtype=np.float32),
        "c8_2.npy": np.array([1 + 2j, 3], dtype=np.complex64),
    }
    for name, a in files.items():
        np.save(os.path.join(OUT, name), a)
    np.savez(os.path.join(OUT, "savez.npz"), x=f4, labels=i4)
    np.savez_compressed(os.path.join(OUT, "savez_compressed.npz"), weights=np.linspace(-1, 1, 50, dtype=np.float32).reshape(5, 10),
                        steps=np.arange(7, dtype=np.int64))
    # A version 2.0 header (numpy writes it for headers over 65535 bytes; forced here).
    with open(os.path.join(OUT, "v2_f4_2.npy"), "wb") as f:
        np.lib.format.write_array(f, np.array([0.25, 8.0], dtype=np.float32), version=(2, 0))


if __name__ == "__main__":
    main()
