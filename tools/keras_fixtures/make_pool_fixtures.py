#!/usr/bin/env python3
"""Writes tests/fixtures/keras_pool.txt: reference numbers from real Keras 3 for lamina's
pooling layers (MaxPooling1D/2D, AveragePooling1D/2D, GlobalMax/GlobalAveragePooling1D/2D).
tests/test_pool.c reads the file; CI never runs this script, it only reads the committed
output. The format is documented in tests/fixtures/keras_core.txt's header.

Regenerate (with Keras on the JAX CPU backend):

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_pool_fixtures.py

Cases:
  layer/<class>/<config>  one layer called on x: y = layer(x), and dx, the gradient of
                          sum(y * r) with respect to x (jax.vjp through the layer call).
                          attrs: class, pool_h, pool_w, stride_h, stride_w, padding.
  mask/...                GlobalAveragePooling1D called with a timestep mask.
  train/<name>            a small model (Dense before the pooling) and one SGD(0.1) step
                          of model.train_on_batch on a fixed target: loss, weights before
                          and after.
  unknown/<name>          a model on Input((None, features)) predicted on two lengths.
Inputs are drawn from numpy's seeded generator; continuous uniform draws make ties in a
max window (whose gradient would be ambiguous) vanishingly unlikely, and the script checks
that there are none.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

if keras.backend.backend() != "jax":
    sys.exit("this script needs KERAS_BACKEND=jax (it differentiates with jax.vjp)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_pool.txt")

RNG = np.random.default_rng(20240611)


def f32(x):
    return np.asarray(x, dtype=np.float32)


def uniform(lo, hi, shape):
    return f32(RNG.uniform(lo, hi, size=shape))


class Writer:
    def __init__(self):
        self.lines = []

    def case(self, name, attrs=None, arrays=()):
        self.lines.append("case %s" % name)
        for k, v in (attrs or {}).items():
            v = str(v)
            assert " " not in v and v, (k, v)
            self.lines.append("attr %s %s" % (k, v))
        for aname, arr in arrays:
            a = np.asarray(arr)
            a = a.astype(np.float32) if a.dtype.kind == "f" else a
            self.lines.append("shape %s %d%s" % (aname, a.ndim, "".join(" %d" % d for d in a.shape)))
            flat = a.reshape(-1)
            if a.dtype.kind == "f":
                vals = " ".join("%.9g" % float(v) for v in flat)
            else:
                vals = " ".join("%d" % int(v) for v in flat)
            self.lines.append("data %s %d %s" % (aname, flat.size, vals))
        self.lines.append("end")


def no_ties(x):
    flat = np.asarray(x).reshape(-1)
    assert len(np.unique(flat)) == flat.size, "tied inputs would make max pooling's gradient ambiguous"


def vjp_case(w, name, layer, x, attrs, mask=None):
    r = uniform(-1.0, 1.0, layer.compute_output_shape(x.shape))

    def f(x_):
        return layer(x_) if mask is None else layer(x_, mask=jnp.asarray(mask))

    y, pullback = jax.vjp(f, jnp.asarray(x))
    (dx,) = pullback(jnp.asarray(r))
    arrays = [("x", x)] + ([("mask", mask)] if mask is not None else []) + [("r", r), ("y", y), ("dx", dx)]
    w.case(name, attrs, arrays)


# ---------------------------------------------------------------- a. windowed pooling
def windowed(w):
    # (pool, strides, padding, spatial input shape): valid and same, strides 1 / 2 / 3 and the
    # default (the pool size), odd sizes where same padding is uneven.
    configs_1d = [
        ((2,), None, "valid", (7,)),
        ((3,), (2,), "same", (8,)),
        ((3,), (1,), "valid", (6,)),
        ((2,), (3,), "same", (7,)),
        ((4,), (3,), "same", (5,)),
    ]
    configs_2d = [
        ((2, 2), None, "valid", (5, 6)),
        ((3, 2), (2, 1), "same", (5, 6)),
        ((3, 3), (1, 1), "same", (4, 5)),
        ((2, 3), (3, 3), "valid", (7, 8)),
        ((3, 2), (2, 3), "same", (6, 7)),
    ]
    classes = [("MaxPooling1D", configs_1d), ("AveragePooling1D", configs_1d),
               ("MaxPooling2D", configs_2d), ("AveragePooling2D", configs_2d)]
    for cls, configs in classes:
        for pool, strides, padding, spatial in configs:
            layer = getattr(keras.layers, cls)(pool_size=pool, strides=strides, padding=padding)
            x = uniform(-2.0, 2.0, (2,) + spatial + (3,))
            no_ties(x)
            s = strides or pool
            attrs = {"class": cls, "pool_h": pool[0], "pool_w": pool[1] if len(pool) > 1 else 1,
                     "stride_h": s[0], "stride_w": s[1] if len(s) > 1 else 1,
                     "strides_default": int(strides is None), "padding": padding}
            name = "layer/%s/p%s_s%s_%s" % (cls, "x".join(map(str, pool)),
                                           "x".join(map(str, s)), padding)
            vjp_case(w, name, layer, x, attrs)


# ---------------------------------------------------------------- b. global pooling
def global_pooling(w):
    for cls, shape in [("GlobalMaxPooling1D", (3, 5, 4)), ("GlobalAveragePooling1D", (3, 5, 4)),
                       ("GlobalMaxPooling2D", (2, 3, 4, 3)), ("GlobalAveragePooling2D", (2, 3, 4, 3))]:
        x = uniform(-2.0, 2.0, shape)
        no_ties(x)
        vjp_case(w, "layer/%s/default" % cls, getattr(keras.layers, cls)(), x, {"class": cls})
    # Keras averages over the unmasked steps only.
    x = uniform(-2.0, 2.0, (3, 5, 4))
    mask = f32([[1, 1, 0, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]])
    vjp_case(w, "mask/GlobalAveragePooling1D", keras.layers.GlobalAveragePooling1D(), x,
             {"class": "GlobalAveragePooling1D"}, mask=mask)


# ---------------------------------------------------------------- c. one training step
def weights_arrays(model, suffix):
    out = []
    for layer in model.layers:
        for v in layer.weights:
            out.append(("%s.%s%s" % (layer.name, v.path.split("/")[-1], suffix), np.asarray(v.value)))
    return out


def train_case(w, name, model, x, y):
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([uniform(-0.8, 0.8, v.shape) for v in layer.weights])
    before = weights_arrays(model, ":before")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    loss = model.train_on_batch(x, y)
    after = weights_arrays(model, ":after")
    w.case("train/" + name, {"optimizer": "sgd", "learning_rate": "0.1", "loss": "mse",
                             "batch_size": x.shape[0]},
           [("x", x), ("y", y)] + before + after + [("loss", f32(loss))])


def train_steps(w):
    keras.utils.set_random_seed(3)
    # Dense -> MaxPooling1D(same, strides 2) -> AveragePooling1D -> GlobalMaxPooling1D -> Dense
    inp = keras.Input((7, 4), name="x")
    h = keras.layers.Dense(5, activation="tanh", name="proj")(inp)
    h = keras.layers.MaxPooling1D(3, strides=2, padding="same", name="mp")(h)
    h = keras.layers.AveragePooling1D(2, strides=1, name="ap")(h)
    h = keras.layers.GlobalMaxPooling1D(name="gmp")(h)
    out = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inp, out)
    train_case(w, "pool1d", model, uniform(-2.0, 2.0, (4, 7, 4)), uniform(-1.0, 1.0, (4, 2)))

    # Dense -> MaxPooling2D((2, 3), valid) and AveragePooling2D(same) -> GlobalAveragePooling2D /
    # GlobalMaxPooling2D -> Dense
    inp = keras.Input((5, 6, 2), name="x")
    h = keras.layers.Dense(4, activation="tanh", name="proj")(inp)
    a = keras.layers.MaxPooling2D((2, 3), strides=(1, 2), name="mp")(h)
    a = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    b = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="ap")(h)
    b = keras.layers.GlobalMaxPooling2D(name="gmp")(b)
    out = keras.layers.Dense(3, name="head")(keras.layers.Concatenate(name="cat")([a, b]))
    model = keras.Model(inp, out)
    train_case(w, "pool2d", model, uniform(-2.0, 2.0, (3, 5, 6, 2)), uniform(-1.0, 1.0, (3, 3)))


# ---------------------------------------------------------------- d. unknown lengths
def unknown_length(w):
    inp = keras.Input((None, 4), name="x")
    a = keras.layers.GlobalMaxPooling1D(name="gmp")(inp)
    b = keras.layers.AveragePooling1D(3, strides=2, padding="same", name="ap")(inp)
    b = keras.layers.MaxPooling1D(2, name="mp")(b)
    b = keras.layers.GlobalAveragePooling1D(name="gap")(b)
    model = keras.Model(inp, [a, b])
    arrays = []
    for steps in (5, 9):
        x = uniform(-2.0, 2.0, (2, steps, 4))
        ya, yb = model.predict(x, verbose=0)
        arrays += [("x%d" % steps, x), ("gmp%d" % steps, ya), ("gap%d" % steps, yb)]
    w.case("unknown/gmp_and_chain", {"lengths": "5,9"}, arrays)


def main():
    w = Writer()
    windowed(w)
    global_pooling(w)
    train_steps(w)
    unknown_length(w)
    header = [
        "# Reference numbers from real Keras for lamina's pooling layers.",
        "# Generated by tools/keras_fixtures/make_pool_fixtures.py; do not edit by hand.",
        "# keras %s, backend %s (jax %s, jaxlib %s), numpy %s, python %s" % (
            keras.__version__, keras.backend.backend(), jax.__version__,
            __import__("jaxlib").__version__, np.__version__, sys.version.split()[0]),
        "# Format: see tests/fixtures/keras_core.txt.",
    ]
    with open(OUT, "w") as fp:
        fp.write("\n".join(header + w.lines) + "\n")
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
