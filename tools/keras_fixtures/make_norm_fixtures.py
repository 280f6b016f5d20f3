#!/usr/bin/env python3
"""Writes tests/fixtures/keras_norm.txt: reference numbers from real Keras 3 for lamina's
BatchNormalization and LayerNormalization. tests/test_norm.c reads the file; CI never runs
this script, it only reads the committed output.

Regenerate (outside the repository's build, with Keras on the JAX CPU backend):

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_norm_fixtures.py

Cases:
  bn/<name>     one BatchNormalization layer: outputs and the vector-Jacobian product with a
                fixed cotangent r (d sum(y * r) / d x, gamma, beta) in training mode, the moving
                statistics after one and two training calls, then outputs and gradients in
                inference mode (with the statistics after two calls); some with a timestep mask.
  ln/<name>     one LayerNormalization layer: outputs and the same gradients.
  train/<name>  Input -> Dense -> BatchNormalization -> Dense compiled with SGD(0.1) and mse:
                every weight before and after train_on_batch (one or two steps), and the loss;
                one with the BatchNormalization layer frozen (trainable=False).

Every input comes from numpy's seeded generator; all numbers are float32 values printed
with %.9g, so that strtod followed by a cast to float gives back the exact float Keras used.
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
    sys.exit("this script needs KERAS_BACKEND=jax (it differentiates with jax.grad)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_norm.txt")

FORMAT_DOC = """\
# Format (line based; '#' starts a comment line; tokens separated by single spaces):
#   case <name>                  starts a case
#   attr <key> <value>           a string attribute of the case (no spaces in value)
#   shape <array> <rank> <d0> ... the shape of the array named <array> (rank 0: a scalar)
#   data <array> <n> <v0> ... <vn-1>
#                                the array's n values in row-major (C) order, printed with
#                                %.9g so that (float)strtod(v) is the exact float32 value
#   end                          ends the case
"""

RNG = np.random.default_rng(20240611)


def f32(x):
    return np.asarray(x, dtype=np.float32)


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
            a = f32(arr)
            self.lines.append("shape %s %d%s" % (aname, a.ndim, "".join(" %d" % d for d in a.shape)))
            flat = a.reshape(-1)
            self.lines.append("data %s %d %s" % (aname, flat.size, " ".join("%.9g" % float(v) for v in flat)))
        self.lines.append("end")


def uniform(lo, hi, shape):
    return f32(RNG.uniform(lo, hi, size=shape))


def features(shape, axis):
    """Inputs whose channels have different offsets and spreads, so that normalizing matters."""
    n = shape[axis]
    bshape = [1] * len(shape)
    bshape[axis] = n
    offset = uniform(-2.0, 3.0, (n,)).reshape(bshape)
    spread = uniform(0.5, 2.5, (n,)).reshape(bshape)
    return f32(offset + spread * RNG.standard_normal(shape))


# ---------------------------------------------------------------- BatchNormalization
def bn_case(w, name, shape, axis=-1, momentum=None, epsilon=None, center=True, scale=True, mask=None):
    kwargs = {"axis": axis, "center": center, "scale": scale}
    if momentum is not None:
        kwargs["momentum"] = momentum
    if epsilon is not None:
        kwargs["epsilon"] = epsilon
    layer = keras.layers.BatchNormalization(**kwargs)
    layer.build((None,) + tuple(shape[1:]))
    n = shape[axis]
    start = {}
    values = []
    for v in layer.weights:
        key = v.path.split("/")[-1]
        if key == "gamma":
            val = uniform(0.5, 1.5, (n,))
        elif key == "beta":
            val = uniform(-0.5, 0.5, (n,))
        elif key == "moving_mean":
            val = uniform(-0.5, 0.5, (n,))
        else:
            val = uniform(0.5, 2.0, (n,))
        start[key] = val
        values.append(val)
    layer.set_weights(values)
    x1, x2 = features(shape, axis), features(shape, axis)
    r = uniform(-1.0, 1.0, shape)
    m = None if mask is None else jnp.asarray(mask.astype(bool))
    tv = [v.value for v in layer.trainable_variables]
    ntv = [v.value for v in layer.non_trainable_variables]
    assert [v.path.split("/")[-1] for v in layer.non_trainable_variables] == ["moving_mean", "moving_variance"]

    def objective(tv_, x_, ntv_, training):
        y, new_ntv = layer.stateless_call(tv_, ntv_, x_, training=training, mask=m)
        return jnp.sum(y * r), (y, new_ntv)

    grad = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)
    (_, (y1, ntv1)), (d_tv1, dx1) = grad(tv, jnp.asarray(x1), ntv, True)
    (_, (y2, ntv2)), _ = grad(tv, jnp.asarray(x2), ntv1, True)
    (_, (y_inf, ntv3)), (d_tv_inf, dx_inf) = grad(tv, jnp.asarray(x1), ntv2, False)
    assert all(np.array_equal(a, b) for a, b in zip(ntv3, ntv2)), "inference moved the statistics"

    attrs = {"axis": axis, "momentum": "%.9g" % layer.momentum, "epsilon": "%.9g" % layer.epsilon,
             "center": int(center), "scale": int(scale), "mask": int(mask is not None)}
    arrays = [("x1", x1), ("x2", x2), ("r", r)]
    if mask is not None:
        arrays.append(("mask", f32(mask)))
    arrays += [("start." + k, v) for k, v in start.items()]
    arrays += [("y1", y1), ("dx1", dx1)]
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    arrays += [("d%s1" % k, g) for k, g in zip(names, d_tv1)]
    arrays += [("moving_mean1", ntv1[0]), ("moving_variance1", ntv1[1]), ("y2", y2),
               ("moving_mean2", ntv2[0]), ("moving_variance2", ntv2[1]), ("y_inf", y_inf),
               ("dx_inf", dx_inf)]
    arrays += [("d%s_inf" % k, g) for k, g in zip(names, d_tv_inf)]
    w.case("bn/" + name, attrs, arrays)


def batch_norm(w):
    bn_case(w, "rank2_axis-1", (6, 4))
    bn_case(w, "rank4_axis-1", (2, 3, 3, 4), momentum=0.9)
    bn_case(w, "rank4_axis1", (2, 3, 2, 2), axis=1, momentum=0.8, epsilon=1e-2)
    bn_case(w, "rank2_no_scale", (5, 3), scale=False)
    bn_case(w, "rank2_no_center", (5, 3), center=False, momentum=0.5)
    bn_case(w, "rank2_bare", (4, 3), center=False, scale=False)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=np.float32)
    bn_case(w, "rank3_masked", (3, 4, 2), mask=mask, momentum=0.9)
    bn_case(w, "rank3_axis1_masked", (3, 4, 2), axis=1, mask=mask, momentum=0.9)


# ---------------------------------------------------------------- LayerNormalization
def ln_case(w, name, shape, axis=-1, epsilon=None, center=True, scale=True):
    kwargs = {"axis": axis, "center": center, "scale": scale}
    if epsilon is not None:
        kwargs["epsilon"] = epsilon
    layer = keras.layers.LayerNormalization(**kwargs)
    layer.build((None,) + tuple(shape[1:]))
    n = shape[axis]
    start = {}
    for v in layer.weights:
        key = v.path.split("/")[-1]
        start[key] = uniform(0.5, 1.5, (n,)) if key == "gamma" else uniform(-0.5, 0.5, (n,))
    layer.set_weights(list(start.values()))
    # per-sample offsets and spreads
    x = f32(uniform(-2.0, 2.0, (shape[0],) + (1,) * (len(shape) - 1)) +
            uniform(0.5, 2.0, (shape[0],) + (1,) * (len(shape) - 1)) * RNG.standard_normal(shape))
    r = uniform(-1.0, 1.0, shape)
    tv = [v.value for v in layer.trainable_variables]

    def objective(tv_, x_):
        y, _ = layer.stateless_call(tv_, [], x_)
        return jnp.sum(y * r), y

    (_, y), (d_tv, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(tv, jnp.asarray(x))
    names = [v.path.split("/")[-1] for v in layer.trainable_variables]
    attrs = {"axis": axis, "epsilon": "%.9g" % layer.epsilon, "center": int(center), "scale": int(scale)}
    arrays = [("x", x), ("r", r)] + [("start." + k, v) for k, v in start.items()] + [("y", y), ("dx", dx)]
    arrays += [("d" + k, g) for k, g in zip(names, d_tv)]
    w.case("ln/" + name, attrs, arrays)


def layer_norm(w):
    ln_case(w, "rank2_axis-1", (5, 6))
    ln_case(w, "rank4_axis-1", (2, 3, 2, 5))
    ln_case(w, "rank4_axis1", (2, 4, 3, 2), axis=1)
    ln_case(w, "rank3_axis-1_no_center", (3, 4, 5), epsilon=1e-5, center=False)
    ln_case(w, "rank2_no_scale", (4, 6), scale=False)
    ln_case(w, "rank3_axis2_of_3", (2, 3, 4), axis=2, epsilon=0.1)


# ---------------------------------------------------------------- training steps
def weights_arrays(model, suffix):
    out = []
    for layer in model.layers:
        for v in layer.weights:
            out.append(("%s.%s%s" % (layer.name, v.path.split("/")[-1], suffix), np.asarray(v.value)))
    return out


def bn_model(frozen):
    keras.utils.set_random_seed(3)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(5, name="d1")(inp)
    bn = keras.layers.BatchNormalization(name="bn")
    h = bn(h)
    out = keras.layers.Dense(2, name="d2")(h)
    model = keras.Model(inp, out)
    model.get_layer("d1").set_weights([uniform(-0.8, 0.8, (4, 5)), uniform(-0.2, 0.2, (5,))])
    bn.set_weights([uniform(0.5, 1.5, (5,)), uniform(-0.3, 0.3, (5,)), uniform(-0.5, 0.5, (5,)),
                    uniform(0.5, 2.0, (5,))])
    model.get_layer("d2").set_weights([uniform(-0.8, 0.8, (5, 2)), uniform(-0.2, 0.2, (2,))])
    if frozen:
        bn.trainable = False
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    return model


def train_steps(w):
    for name, frozen, steps in (("dense_bn_dense_sgd", False, 1), ("dense_bn_dense_sgd_two_steps", False, 2),
                                ("dense_frozen_bn_dense_sgd", True, 1)):
        model = bn_model(frozen)
        x = f32(uniform(-1.0, 2.0, (8 * steps, 4)))
        y = uniform(-1.0, 1.0, (8 * steps, 2))
        before = weights_arrays(model, ":before")
        losses = [float(model.train_on_batch(x[8 * k:8 * k + 8], y[8 * k:8 * k + 8])) for k in range(steps)]
        after = weights_arrays(model, ":after")
        w.case("train/" + name,
               {"optimizer": "sgd", "learning_rate": "0.1", "loss": "mse", "batch_size": 8, "steps": steps,
                "frozen": int(frozen)},
               [("x", x), ("y", y)] + before + after + [("loss", f32(np.mean(losses)))])


def main():
    w = Writer()
    batch_norm(w)
    layer_norm(w)
    train_steps(w)
    header = [
        "# Reference numbers from real Keras for lamina's normalization layers.",
        "# Generated by tools/keras_fixtures/make_norm_fixtures.py; do not edit by hand.",
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
