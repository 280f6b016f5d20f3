#!/usr/bin/env python3
"""Writes tests/fixtures/keras_core.txt: reference numbers from real Keras 3 for lamina's
core numerics (activations, losses and their gradients, metrics, optimizers, Dense, and
one training step of small models). tests/test_keras_parity.c reads the file; CI never
runs this script, it only reads the committed output.

Regenerate (outside the repository's build, with Keras on the JAX CPU backend):

    python3 -m venv /opt/keras-venv
    /opt/keras-venv/bin/pip install keras 'jax[cpu]'
    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_core_fixtures.py

Every input comes from numpy's seeded generator, so the output only changes when Keras,
JAX or numpy change their numerics. All numbers are float32 values printed with %.9g, so
that strtod followed by a cast to float gives back the exact float Keras used.
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
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_core.txt")

FORMAT_DOC = """\
# Format (line based; '#' starts a comment line; tokens separated by single spaces):
#   case <name>                  starts a case; names look like "activation/relu"
#   attr <key> <value>           a string attribute of the case (no spaces in value)
#   shape <array> <rank> <d0> ... the shape of the array named <array> (rank 0: a scalar)
#   data <array> <n> <v0> ... <vn-1>
#                                the array's n values in row-major (C) order, printed with
#                                %.9g so that (float)strtod(v) is the exact float32 value
#   end                          ends the case
# Every array has a shape line before its data line, and n is the product of its dims.
"""

RNG = np.random.default_rng(20240607)


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


def uniform(lo, hi, shape):
    return f32(RNG.uniform(lo, hi, size=shape))


# ---------------------------------------------------------------- a. activations
def activations(w):
    x = uniform(-4.0, 4.0, (3, 5))
    x[0, 0], x[2, 4] = -4.0, 4.0  # the ends of the range
    import inspect

    gelu_approx = inspect.signature(keras.activations.gelu).parameters["approximate"].default
    assert gelu_approx is False, "Keras's gelu default changed: %r" % gelu_approx
    names = ["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu",
             "softplus", "silu"]
    r = uniform(-1.0, 1.0, (3, 5))  # the cotangent: dx = r * dy/dx (vjp)
    for name in names:
        fn = getattr(keras.activations, name)
        y, vjp = jax.vjp(fn, jnp.asarray(x))
        (dx,) = vjp(jnp.asarray(r))
        attrs = {"activation": name}
        if name == "gelu":
            attrs["approximate"] = str(gelu_approx)
        w.case("activation/" + name, attrs, [("x", x), ("y", y), ("r", r), ("dx", dx)])


# ---------------------------------------------------------------- b. losses
def losses(w):
    rows, cols = 4, 3
    reg_pred = uniform(-2.0, 2.0, (rows, cols))
    reg_true = uniform(-2.0, 2.0, (rows, cols))
    # Bernoulli probabilities, with entries clipped by Keras (exact 0 and 1, and values
    # inside (0, 1e-7)) next to ordinary ones; soft and hard labels.
    bin_prob = uniform(0.02, 0.98, (rows, cols))
    bin_prob[0, 0], bin_prob[1, 2], bin_prob[3, 1] = 0.0, 1.0, 1e-9
    bin_true = f32([[0, 1, 1], [1, 0, 1], [0.25, 0, 1], [1, 0, 0.5]])
    logits = uniform(-3.0, 3.0, (rows, cols))
    # Categorical: unnormalized positive rows (Keras divides by the row sum), a one-hot
    # prediction (both clip ends), and a row with a zero entry.
    cat_prob = uniform(0.05, 1.0, (rows, cols))
    cat_prob[1] = [0.0, 1.0, 0.0]
    cat_prob[2, 0] = 0.0
    cat_true = f32([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0.2, 0.3, 0.5]])
    sparse_true = np.array([2, 0, 1, 1], dtype=np.int32)
    # A sparse prediction that hits the clip: class 1 of row 1 has probability 0.
    sparse_prob = cat_prob.copy()
    sparse_prob[1] = [1.0, 0.0, 0.0]

    cases = [
        ("mse", keras.losses.MeanSquaredError(), reg_pred, reg_true, {}),
        ("mae", keras.losses.MeanAbsoluteError(), reg_pred, reg_true, {}),
        ("huber", keras.losses.Huber(), reg_pred, reg_true, {"delta": "1.0"}),
        ("binary_crossentropy", keras.losses.BinaryCrossentropy(from_logits=False),
         bin_prob, bin_true, {}),
        ("binary_crossentropy:logits", keras.losses.BinaryCrossentropy(from_logits=True),
         logits, bin_true, {}),
        ("categorical_crossentropy", keras.losses.CategoricalCrossentropy(from_logits=False),
         cat_prob, cat_true, {}),
        ("categorical_crossentropy:logits",
         keras.losses.CategoricalCrossentropy(from_logits=True), logits, cat_true, {}),
        ("sparse_categorical_crossentropy",
         keras.losses.SparseCategoricalCrossentropy(from_logits=False), sparse_prob,
         sparse_true, {}),
        ("sparse_categorical_crossentropy:logits",
         keras.losses.SparseCategoricalCrossentropy(from_logits=True), logits, sparse_true, {}),
    ]
    for name, loss_obj, pred, true, extra in cases:
        yt = jnp.asarray(true)

        def f(p, loss_obj=loss_obj, yt=yt):
            return loss_obj(yt, p)

        loss, grad = jax.value_and_grad(f)(jnp.asarray(pred))
        attrs = {"loss": name, "reduction": loss_obj.reduction}
        attrs.update(extra)
        w.case("loss/" + name, attrs,
               [("pred", pred), ("target", f32(true)), ("loss", f32(loss)), ("dpred", grad)])


# ---------------------------------------------------------------- c. metrics
def metrics(w):
    rows, cols = 4, 3
    metric_defs = [
        ("binary_accuracy", keras.metrics.BinaryAccuracy, "binary"),
        ("categorical_accuracy", keras.metrics.CategoricalAccuracy, "categorical"),
        ("sparse_categorical_accuracy", keras.metrics.SparseCategoricalAccuracy, "sparse"),
        ("mae", keras.metrics.MeanAbsoluteError, "regression"),
        ("mse", keras.metrics.MeanSquaredError, "regression"),
        ("auc", keras.metrics.AUC, "binary"),
    ]
    for name, cls, kind in metric_defs:
        m = cls()
        arrays = []
        for b in range(2):
            if kind == "binary":
                pred = uniform(0.0, 1.0, (rows, cols))
                true = f32(RNG.integers(0, 2, (rows, cols)))
                if b == 0:
                    pred[0, 0], pred[0, 1], pred[1, 0] = 0.5, 0.0, 1.0  # thresholds' ends
            elif kind == "categorical":
                pred = uniform(0.0, 1.0, (rows, cols))
                true = f32(np.eye(cols)[RNG.integers(0, cols, rows)])
                if b == 0:
                    pred[0] = [0.4, 0.4, 0.2]  # a tie: the first maximum wins
            elif kind == "sparse":
                pred = uniform(0.0, 1.0, (rows, cols))
                true = f32(RNG.integers(0, cols, (rows,)))
            else:
                pred = uniform(-2.0, 2.0, (rows, cols))
                true = uniform(-2.0, 2.0, (rows, cols))
            m.update_state(jnp.asarray(true), jnp.asarray(pred))
            arrays += [("pred%d" % b, pred), ("target%d" % b, true)]
        arrays.append(("result", f32(m.result())))
        w.case("metric/" + name, {"metric": name, "class": cls.__name__}, arrays)


# ---------------------------------------------------------------- d. optimizers
def optimizers(w):
    w0 = uniform(-1.0, 1.0, (6,))
    grads = [uniform(-1.0, 1.0, (6,)) for _ in range(3)]
    grads[1][0] = 0.0  # a zero gradient
    defs = [
        ("sgd", lambda: keras.optimizers.SGD()),
        ("sgd_momentum", lambda: keras.optimizers.SGD(momentum=0.9)),
        ("sgd_nesterov", lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True)),
        ("rmsprop", lambda: keras.optimizers.RMSprop()),
        ("adam", lambda: keras.optimizers.Adam()),
        ("adamw", lambda: keras.optimizers.AdamW()),
        ("adagrad", lambda: keras.optimizers.Adagrad()),
    ]
    for name, make in defs:
        opt = make()
        var = keras.Variable(w0.copy(), dtype="float32")
        opt.build([var])
        arrays = [("w0", w0)]
        for k, g in enumerate(grads):
            opt.apply([jnp.asarray(g)], [var])
            arrays += [("g%d" % (k + 1), g), ("w%d" % (k + 1), np.asarray(var.value))]
        cfg = opt.get_config()
        attrs = {"optimizer": name, "class": type(opt).__name__,
                 "learning_rate": "%.9g" % float(cfg["learning_rate"])}
        for key in ("momentum", "nesterov", "rho", "epsilon", "beta_1", "beta_2",
                    "weight_decay", "initial_accumulator_value", "centered", "amsgrad"):
            if key in cfg and cfg[key] is not None:
                attrs[key] = cfg[key] if isinstance(cfg[key], bool) else "%.9g" % cfg[key]
        w.case("optimizer/" + name, attrs, arrays)


# ---------------------------------------------------------------- e. Dense
def dense(w):
    kernel = uniform(-1.0, 1.0, (4, 3))
    bias = uniform(-0.5, 0.5, (3,))
    x = uniform(-2.0, 2.0, (5, 4))
    r = uniform(-1.0, 1.0, (5, 3))
    for act in ("relu", "softmax"):
        layer = keras.layers.Dense(3, activation=act)
        layer.build((None, 4))
        layer.set_weights([kernel, bias])
        tv = [v.value for v in layer.trainable_variables]
        ntv = [v.value for v in layer.non_trainable_variables]
        assert [v.path.split("/")[-1] for v in layer.trainable_variables] == ["kernel", "bias"]

        def objective(tv_, x_, ntv=ntv, layer=layer):
            y, _ = layer.stateless_call(tv_, ntv, x_)
            return jnp.sum(y * r), y

        (_, y), (d_tv, dx) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
            tv, jnp.asarray(x))
        w.case("dense/" + act, {"activation": act, "units": 3},
               [("kernel", kernel), ("bias", bias), ("x", x), ("r", r), ("y", y),
                ("dkernel", d_tv[0]), ("dbias", d_tv[1]), ("dx", dx)])


# ---------------------------------------------------------------- f. / g. training steps
def weights_arrays(model, suffix):
    out = []
    for layer in model.layers:
        for v in layer.weights:
            out.append(("%s.%s%s" % (layer.name, v.path.split("/")[-1], suffix),
                        np.asarray(v.value)))
    return out


def train_step_single(w):
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out)
    model.get_layer("hidden").set_weights([uniform(-0.8, 0.8, (4, 8)), uniform(-0.2, 0.2, (8,))])
    model.get_layer("probs").set_weights([uniform(-0.8, 0.8, (8, 3)), uniform(-0.2, 0.2, (3,))])
    x = uniform(-2.0, 2.0, (6, 4))
    y = f32(np.eye(3)[[0, 2, 1, 1, 0, 2]])
    before = weights_arrays(model, ":before")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                  loss="categorical_crossentropy")
    loss = model.train_on_batch(x, y)
    after = weights_arrays(model, ":after")
    w.case("train/dense_relu_softmax_sgd",
           {"optimizer": "sgd", "learning_rate": "0.1", "loss": "categorical_crossentropy",
            "batch_size": 6},
           [("x", x), ("y", y)] + before + after + [("loss", f32(loss))])


def train_step_two_outputs(w):
    keras.utils.set_random_seed(2)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(5, activation="tanh", name="trunk")(inp)
    reg = keras.layers.Dense(2, name="reg")(h)
    cls = keras.layers.Dense(1, activation="sigmoid", name="cls")(h)
    model = keras.Model(inp, [reg, cls])
    model.get_layer("trunk").set_weights([uniform(-0.8, 0.8, (4, 5)), uniform(-0.2, 0.2, (5,))])
    model.get_layer("reg").set_weights([uniform(-0.8, 0.8, (5, 2)), uniform(-0.2, 0.2, (2,))])
    model.get_layer("cls").set_weights([uniform(-0.8, 0.8, (5, 1)), uniform(-0.2, 0.2, (1,))])
    x = uniform(-2.0, 2.0, (6, 4))
    y_reg = uniform(-1.0, 1.0, (6, 2))
    y_cls = f32([[1], [0], [0], [1], [1], [0]])
    before = weights_arrays(model, ":before")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                  loss=["mse", "binary_crossentropy"], loss_weights=[0.5, 2.0])
    logs = model.train_on_batch(x, [y_reg, y_cls], return_dict=True)
    after = weights_arrays(model, ":after")
    w.case("train/two_outputs_mse_bce_sgd",
           {"optimizer": "sgd", "learning_rate": "0.1", "losses": "mse,binary_crossentropy",
            "loss_weights": "0.5,2.0", "batch_size": 6},
           [("x", x), ("y_reg", y_reg), ("y_cls", y_cls)] + before + after +
           [("loss", f32(logs["loss"]))])


def main():
    w = Writer()
    activations(w)
    losses(w)
    metrics(w)
    optimizers(w)
    dense(w)
    train_step_single(w)
    train_step_two_outputs(w)
    header = [
        "# Reference numbers from real Keras for lamina's core numerics.",
        "# Generated by tools/keras_fixtures/make_core_fixtures.py; do not edit by hand.",
        "# keras %s, backend %s (jax %s, jaxlib %s), numpy %s, python %s" % (
            keras.__version__, keras.backend.backend(), jax.__version__,
            __import__("jaxlib").__version__, np.__version__, sys.version.split()[0]),
        "# keras.activations.gelu default approximate=%s (the exact erf form)" %
        __import__("inspect").signature(keras.activations.gelu).parameters["approximate"].default,
    ]
    text = "\n".join(header) + "\n" + FORMAT_DOC + "\n".join(w.lines) + "\n"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write(text)
    print("wrote %s (%d bytes)" % (OUT, len(text)))


if __name__ == "__main__":
    main()
