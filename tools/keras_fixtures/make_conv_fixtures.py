#!/usr/bin/env python3
"""Writes tests/fixtures/keras_conv.txt: reference numbers from real Keras 3 for lamina's
convolution layers (Conv1D, Conv2D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D).
tests/test_conv.c reads the file; CI never runs this script, it only reads the output.

Regenerate (with Keras on the JAX CPU backend, see make_core_fixtures.py):

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_conv_fixtures.py

Each "conv/..." case is one layer in a one-layer model with fixed weights:
  x, target                  the batch and the MSE target
  <weight>:before            every weight, in Keras's order and names
  y                          the model's output
  loss, dx, <weight>:grad    the MSE loss and its gradients (jax.grad)
  <weight>:after             the weights after model.train_on_batch with SGD(0.1), "mse"
The "params/..." cases hold Keras's parameter counts of whole models as attributes.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_core_fixtures import FORMAT_DOC, Writer, f32  # noqa: E402

if keras.backend.backend() != "jax":
    sys.exit("this script needs KERAS_BACKEND=jax (it differentiates with jax.grad)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_conv.txt")

RNG = np.random.default_rng(20240611)
L = keras.layers


def uniform(lo, hi, shape):
    return f32(RNG.uniform(lo, hi, size=shape))


def pair(v, n):
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    return ",".join(str(int(a)) for a in v)


# (case name, class, positional args, keyword args, input shape with the batch)
CASES = [
    ("conv1d/k3_valid", L.Conv1D, (4, 3), {}, (2, 7, 3)),
    ("conv1d/k4_same_s2_relu", L.Conv1D, (3, 4), {"padding": "same", "strides": 2, "activation": "relu"}, (2, 9, 2)),
    ("conv1d/k3_same_d2_nobias", L.Conv1D, (3, 3), {"padding": "same", "dilation_rate": 2, "use_bias": False}, (2, 8, 2)),
    ("conv1d/k1", L.Conv1D, (5, 1), {}, (2, 5, 3)),
    ("conv1d/k5_valid_s3", L.Conv1D, (2, 5), {"strides": 3}, (2, 11, 2)),
    ("conv2d/k3_valid_relu", L.Conv2D, (4, 3), {"activation": "relu"}, (2, 5, 6, 2)),
    ("conv2d/k3_same_s2", L.Conv2D, (3, 3), {"padding": "same", "strides": 2}, (2, 7, 6, 2)),
    ("conv2d/k2_same", L.Conv2D, (2, 2), {"padding": "same"}, (2, 4, 5, 2)),
    ("conv2d/k3x2_valid_s2x1_nobias", L.Conv2D, (3, (3, 2)), {"strides": (2, 1), "use_bias": False}, (2, 7, 5, 2)),
    ("conv2d/k3_same_d2", L.Conv2D, (2, 3), {"padding": "same", "dilation_rate": 2}, (2, 6, 6, 2)),
    ("conv2d/k3_valid_d2x1", L.Conv2D, (2, 3), {"dilation_rate": (2, 1)}, (2, 7, 5, 2)),
    ("conv2d/k3_same_s2_c9", L.Conv2D, (3, 3), {"padding": "same", "strides": 2}, (2, 5, 4, 9)),
    ("conv2d/k1", L.Conv2D, (4, 1), {}, (2, 3, 4, 3)),
    ("conv2d/k1_same_s2_relu", L.Conv2D, (3, 1), {"padding": "same", "strides": 2, "activation": "relu"}, (2, 5, 4, 2)),
    ("depthwise_conv2d/k3_valid", L.DepthwiseConv2D, (3,), {}, (2, 5, 5, 3)),
    ("depthwise_conv2d/k3_same_s2_m2_relu", L.DepthwiseConv2D, (3,),
     {"padding": "same", "strides": 2, "depth_multiplier": 2, "activation": "relu"}, (2, 7, 6, 2)),
    ("depthwise_conv2d/k3_same_d2_nobias", L.DepthwiseConv2D, (3,),
     {"padding": "same", "dilation_rate": 2, "use_bias": False}, (2, 6, 6, 2)),
    ("depthwise_conv2d/k2x3_valid_s2_d2_m2", L.DepthwiseConv2D, ((2, 3),),
     {"strides": 2, "dilation_rate": 2, "depth_multiplier": 2}, (2, 7, 8, 2)),
    ("depthwise_conv2d/k3_same_c18", L.DepthwiseConv2D, (3,), {"padding": "same"}, (2, 3, 4, 18)),
    ("separable_conv1d/k3_valid", L.SeparableConv1D, (4, 3), {}, (2, 7, 3)),
    ("separable_conv1d/k3_same_s2_m2_relu", L.SeparableConv1D, (3, 3),
     {"padding": "same", "strides": 2, "depth_multiplier": 2, "activation": "relu"}, (2, 9, 2)),
    ("separable_conv1d/k3_same_d2_nobias", L.SeparableConv1D, (3, 3),
     {"padding": "same", "dilation_rate": 2, "use_bias": False}, (2, 8, 2)),
    ("separable_conv2d/k3_valid_relu", L.SeparableConv2D, (4, 3), {"activation": "relu"}, (2, 5, 5, 2)),
    ("separable_conv2d/k3_same_s2_m2", L.SeparableConv2D, (3, 3),
     {"padding": "same", "strides": 2, "depth_multiplier": 2}, (2, 7, 6, 2)),
    ("separable_conv2d/k3_same_d2_nobias", L.SeparableConv2D, (3, 3),
     {"padding": "same", "dilation_rate": 2, "use_bias": False}, (2, 6, 6, 2)),
    ("separable_conv2d/k2_valid_c17_relu", L.SeparableConv2D, (4, 2), {"activation": "relu"}, (2, 3, 4, 17)),
]


def layer_case(w, name, cls, args, kw, shape):
    keras.utils.set_random_seed(7)
    layer = cls(*args, name="conv", **kw)
    inp = keras.Input(shape[1:])
    model = keras.Model(inp, layer(inp))
    weights = []
    for v in layer.weights:
        lo, hi = (-0.3, 0.3) if v.path.endswith("bias") else (-0.6, 0.6)
        weights.append(uniform(lo, hi, tuple(v.shape)))
    layer.set_weights(weights)
    wnames = [v.path.split("/")[-1] for v in layer.weights]
    x = uniform(-1.0, 1.0, shape)
    y = np.asarray(model(x))
    target = uniform(-1.0, 1.0, y.shape)

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    mse = keras.losses.MeanSquaredError()

    def objective(tv_, x_):
        out, _ = model.stateless_call(tv_, ntv, x_)
        return mse(jnp.asarray(target), out)

    loss, (dtv, dx) = jax.value_and_grad(objective, argnums=(0, 1))(tv, jnp.asarray(x))
    before = [(n + ":before", a) for n, a in zip(wnames, weights)]
    grads = [(n + ":grad", np.asarray(g)) for n, g in zip(wnames, dtv)]

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    step_loss = model.train_on_batch(x, target)
    assert abs(float(step_loss) - float(loss)) <= 1e-6 * max(1.0, abs(float(loss))), (step_loss, loss)
    after = [(n + ":after", np.asarray(v.value)) for n, v in zip(wnames, layer.weights)]

    cfg = layer.get_config()
    rank = len(shape) - 2
    attrs = {
        "class": type(layer).__name__,
        "filters": cfg.get("filters", 0),
        "kernel_size": pair(cfg["kernel_size"], rank),
        "strides": pair(cfg["strides"], rank),
        "dilation_rate": pair(cfg["dilation_rate"], rank),
        "padding": cfg["padding"],
        "depth_multiplier": cfg.get("depth_multiplier", 1),
        "use_bias": cfg["use_bias"],
        "activation": cfg["activation"],
        "weights": ",".join(wnames),
        "params": layer.count_params(),
        "learning_rate": "0.1",
    }
    w.case("conv/" + name, attrs,
           [("x", x), ("target", target)] + before + [("y", y), ("loss", f32(loss)), ("dx", dx)] + grads + after)


def params_cases(w):
    """Parameter counts of the chapter's models, layer by layer."""
    inp = keras.Input((64, 64, 3))
    x = L.SeparableConv2D(32, 3, activation="relu")(inp)
    x = L.SeparableConv2D(64, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.SeparableConv2D(64, 3, activation="relu")(x)
    x = L.SeparableConv2D(128, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.SeparableConv2D(64, 3, activation="relu")(x)
    x = L.SeparableConv2D(128, 3, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(32, activation="relu")(x)
    out = L.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out)
    attrs = {"total": model.count_params()}
    for layer in model.layers[1:]:
        attrs["%s.params" % layer.name] = layer.count_params()
        attrs["%s.shape" % layer.name] = ",".join("None" if d is None else str(d) for d in layer.output.shape)
    w.case("params/separable_classifier", attrs)

    inp = keras.Input((None, 128))
    x = L.Conv1D(32, 7, activation="relu")(inp)
    x = L.MaxPooling1D(5)(x)
    x = L.Conv1D(32, 7, activation="relu")(x)
    model = keras.Model(inp, x)
    attrs = {"total": model.count_params()}
    for layer in model.layers[1:]:
        if layer.count_params():
            attrs["%s.params" % layer.name] = layer.count_params()
    w.case("params/imdb_conv1d", attrs)


def main():
    w = Writer()
    for case in CASES:
        layer_case(w, *case)
    params_cases(w)
    header = [
        "# Reference numbers from real Keras for lamina's convolution layers.",
        "# Generated by tools/keras_fixtures/make_conv_fixtures.py; do not edit by hand.",
        "# keras %s, backend %s (jax %s, jaxlib %s), numpy %s, python %s" % (
            keras.__version__, keras.backend.backend(), jax.__version__,
            __import__("jaxlib").__version__, np.__version__, sys.version.split()[0]),
    ]
    text = "\n".join(header) + "\n" + FORMAT_DOC + "\n".join(w.lines) + "\n"
    with open(OUT, "w") as fh:
        fh.write(text)
    print("wrote %s (%d bytes)" % (OUT, len(text)))


if __name__ == "__main__":
    main()
