#!/usr/bin/env python3
"""Writes tests/fixtures/keras_rnn.txt: reference numbers from real Keras 3 for lamina's
sequence layers (LSTM, GRU, SimpleRNN, Bidirectional, Embedding with mask_zero).
tests/test_rnn.c and tests/test_embedding.c read the file; CI never runs this script.

Regenerate (with Keras on the JAX CPU backend):

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_rnn_fixtures.py

Each case is one small model, Input -> [Embedding ->] layer, with weights drawn from numpy's
seeded generator. It records:
  x                    the input (int indices for Embedding cases)
  w<i>                 the model's weights in Keras's order (model.weights); attr `weights`
                       lists their names and `params` the parameter count
  y<k>                 every output of model.predict (output, then return_state states)
  r<k>, g<i>, dx       cotangents r<k>, and the gradients of sum_k sum(y_k * r_k) with
                       respect to each weight (g<i>) and to a float input (dx), by jax.grad
  t<k>, w<i>:after,    when attr fit is 1: targets, the weights after one
  loss                 model.train_on_batch with SGD(0.1) and mse on every output, and its loss
Cases whose output carries a timestep mask (return_sequences after mask_zero) have fit 0:
Keras weights their loss by the mask, which is not the layer's business.
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
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_rnn.txt")

FORMAT_DOC = """\
# Format (line based; '#' starts a comment line; tokens separated by single spaces):
#   case <name>                  starts a case; names look like "lstm/seq"
#   attr <key> <value>           a string attribute of the case (no spaces in value)
#   shape <array> <rank> <d0> ... the shape of the array named <array> (rank 0: a scalar)
#   data <array> <n> <v0> ... <vn-1>
#                                the array's n values in row-major (C) order, printed with
#                                %.9g so that (float)strtod(v) is the exact float32 value
#   end                          ends the case
# Every array has a shape line before its data line, and n is the product of its dims.
"""

RNG = np.random.default_rng(20240923)
L = keras.layers


def f32(x):
    return np.asarray(x, dtype=np.float32)


def uniform(lo, hi, shape):
    return f32(RNG.uniform(lo, hi, size=shape))


class Writer:
    def __init__(self):
        self.lines = []

    def case(self, name, attrs, arrays):
        self.lines.append("case %s" % name)
        for k, v in attrs.items():
            v = str(v)
            assert " " not in v and v, (k, v)
            self.lines.append("attr %s %s" % (k, v))
        for aname, arr in arrays:
            a = np.asarray(arr)
            self.lines.append("shape %s %d%s" % (aname, a.ndim, "".join(" %d" % d for d in a.shape)))
            flat = a.reshape(-1)
            if a.dtype.kind == "f":
                vals = " ".join("%.9g" % float(v) for v in flat.astype(np.float32))
            else:
                vals = " ".join("%d" % int(v) for v in flat)
            self.lines.append("data %s %d %s" % (aname, flat.size, vals))
        self.lines.append("end")


def set_random_weights(model):
    for v in model.weights:
        name = v.path.split("/")[-1]
        lo, hi = {"bias": (-0.3, 0.3), "embeddings": (-1.0, 1.0)}.get(name, (-0.6, 0.6))
        v.assign(uniform(lo, hi, v.shape))


# Padded index sequences: post-padding, pre-padding, zeros inside, none, all padding.
MASKED_IDS = np.array([[3, 5, 2, 0, 0, 0],
                       [0, 0, 4, 1, 7, 2],
                       [6, 0, 3, 0, 8, 9],
                       [1, 2, 3, 4, 5, 6],
                       [0, 0, 0, 0, 0, 0]], dtype=np.int32)


def record(w, name, attrs, model, x, fit=True):
    set_random_weights(model)
    weights = [np.asarray(v.value) for v in model.weights]
    wnames = [v.path.split("/")[-1] for v in model.weights]
    arrays = [("x", x)] + [("w%d" % i, a) for i, a in enumerate(weights)]
    ys = model.predict(x, verbose=0)
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    arrays += [("y%d" % k, y) for k, y in enumerate(ys)]

    # Gradients of sum_k sum(y_k * r_k), by jax.grad through the model's stateless call.
    rs = [uniform(-1.0, 1.0, y.shape) for y in ys]
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    assert len(tv) == len(weights)
    float_input = x.dtype.kind == "f"

    def objective(tv_, x_):
        out, _ = model.stateless_call(tv_, ntv, x_)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        return sum(jnp.sum(o * r) for o, r in zip(out, rs))

    if float_input:
        gw, gx = jax.grad(objective, argnums=(0, 1))(tv, jnp.asarray(x))
    else:
        gw, gx = jax.grad(objective)(tv, jnp.asarray(x)), None
    arrays += [("r%d" % k, r) for k, r in enumerate(rs)]
    arrays += [("g%d" % i, g) for i, g in enumerate(gw)]
    if gx is not None:
        arrays.append(("dx", gx))

    attrs = dict(attrs)
    attrs["weights"] = ",".join(wnames)
    attrs["params"] = model.count_params()
    attrs["outputs"] = len(ys)
    attrs["fit"] = int(fit)
    if fit:
        ts = [uniform(-1.0, 1.0, y.shape) for y in ys]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss=["mse"] * len(ys))
        logs = model.train_on_batch(x, ts if len(ts) > 1 else ts[0], return_dict=True)
        arrays += [("t%d" % k, t) for k, t in enumerate(ts)]
        arrays += [("w%d:after" % i, np.asarray(v.value)) for i, v in enumerate(model.weights)]
        arrays.append(("loss", f32(logs["loss"])))
        attrs["learning_rate"] = "0.1"
    w.case(name, attrs, arrays)


def rnn_cases(w):
    B, T, F = 3, 5, 4
    defs = [
        ("lstm/seq", L.LSTM, dict(return_sequences=True)),
        ("lstm/state", L.LSTM, dict(return_state=True)),
        ("lstm/backwards", L.LSTM, dict(go_backwards=True)),
        ("lstm/backwards_seq_state", L.LSTM, dict(return_sequences=True, go_backwards=True, return_state=True)),
        ("lstm/no_bias_elu", L.LSTM, dict(use_bias=False, activation="elu", return_sequences=True)),
        ("gru/seq", L.GRU, dict(return_sequences=True)),
        ("gru/state_backwards", L.GRU, dict(return_state=True, go_backwards=True)),
        ("gru/reset_before_seq", L.GRU, dict(reset_after=False, return_sequences=True)),
        ("gru/reset_before_seq_state_backwards", L.GRU,
         dict(reset_after=False, return_sequences=True, return_state=True, go_backwards=True)),
        ("gru/no_bias", L.GRU, dict(use_bias=False)),
        ("simple_rnn/seq", L.SimpleRNN, dict(return_sequences=True)),
        ("simple_rnn/state_backwards", L.SimpleRNN, dict(return_state=True, go_backwards=True)),
        ("simple_rnn/relu_seq_backwards", L.SimpleRNN,
         dict(activation="relu", return_sequences=True, go_backwards=True)),
    ]
    for name, cls, kw in defs:
        keras.utils.set_random_seed(1)
        layer = cls(3, **kw)
        inp = keras.Input((T, F))
        out = layer(inp)
        model = keras.Model(inp, out)
        attrs = {"layer": cls.__name__, "units": 3}
        attrs.update({k: (int(v) if isinstance(v, bool) else v) for k, v in kw.items()})
        record(w, name, attrs, model, uniform(-1.5, 1.5, (B, T, F)))

    # Long recurrences (checked to 1e-4).
    for name, cls in (("lstm/long", L.LSTM), ("gru/long", L.GRU)):
        keras.utils.set_random_seed(2)
        inp = keras.Input((40, 3))
        model = keras.Model(inp, cls(4, return_sequences=True)(inp))
        record(w, name, {"layer": cls.__name__, "units": 4, "return_sequences": 1, "long": 1}, model,
               uniform(-1.0, 1.0, (2, 40, 3)))


def bidirectional_cases(w):
    B, T, F = 3, 5, 4
    defs = [
        ("bidirectional/lstm_concat_seq", L.LSTM, dict(return_sequences=True), "concat"),
        ("bidirectional/lstm_sum", L.LSTM, dict(), "sum"),
        ("bidirectional/gru_concat_state", L.GRU, dict(return_state=True), "concat"),
        ("bidirectional/lstm_sum_seq_state", L.LSTM, dict(return_sequences=True, return_state=True), "sum"),
        ("bidirectional/gru_mul_seq", L.GRU, dict(return_sequences=True), "mul"),
        ("bidirectional/simple_rnn_ave_seq", L.SimpleRNN, dict(return_sequences=True), "ave"),
    ]
    for name, cls, kw, mode in defs:
        keras.utils.set_random_seed(3)
        inp = keras.Input((T, F))
        bi = L.Bidirectional(cls(3, **kw), merge_mode=mode)
        model = keras.Model(inp, bi(inp))
        attrs = {"layer": "Bidirectional", "inner": cls.__name__, "units": 3, "merge_mode": mode}
        attrs.update({k: int(v) for k, v in kw.items()})
        record(w, name, attrs, model, uniform(-1.5, 1.5, (B, T, F)))


def embedding_cases(w):
    V, D = 10, 4
    # Embedding alone, then followed by recurrent layers on padded (masked) sequences.
    keras.utils.set_random_seed(4)
    inp = keras.Input((6,), dtype="int32")
    model = keras.Model(inp, L.Embedding(V, D)(inp))
    record(w, "embedding/alone", {"layer": "Embedding", "input_dim": V, "output_dim": D}, model,
           MASKED_IDS[:4])
    defs = [
        ("embedding/lstm_unmasked", L.LSTM, dict(), False, True),
        ("embedding/mask_lstm", L.LSTM, dict(), True, True),
        ("embedding/mask_lstm_seq", L.LSTM, dict(return_sequences=True), True, False),
        ("embedding/mask_lstm_backwards_state", L.LSTM, dict(go_backwards=True, return_state=True), True, True),
        ("embedding/mask_gru_seq_backwards", L.GRU, dict(return_sequences=True, go_backwards=True), True, False),
        ("embedding/mask_gru_reset_before_state", L.GRU, dict(reset_after=False, return_state=True), True, True),
        ("embedding/mask_simple_rnn_seq", L.SimpleRNN, dict(return_sequences=True), True, False),
        ("embedding/mask_bidirectional_lstm_concat_seq", "bi", dict(return_sequences=True), True, False),
        ("embedding/mask_bidirectional_gru_sum", "bi_gru", dict(), True, True),
    ]
    for name, cls, kw, mask_zero, fit in defs:
        keras.utils.set_random_seed(5)
        inp = keras.Input((6,), dtype="int32")
        e = L.Embedding(V, D, mask_zero=mask_zero)(inp)
        attrs = {"layer": "Embedding", "input_dim": V, "output_dim": D, "mask_zero": int(mask_zero), "units": 3}
        if cls == "bi":
            out = L.Bidirectional(L.LSTM(3, **kw))(e)
            attrs.update(next_layer="Bidirectional", inner="LSTM", merge_mode="concat")
        elif cls == "bi_gru":
            out = L.Bidirectional(L.GRU(3, **kw), merge_mode="sum")(e)
            attrs.update(next_layer="Bidirectional", inner="GRU", merge_mode="sum")
        else:
            out = cls(3, **kw)(e)
            attrs["next_layer"] = cls.__name__
        attrs.update({k: int(v) for k, v in kw.items()})
        record(w, name, attrs, keras.Model(inp, out), MASKED_IDS, fit=fit)


def main():
    w = Writer()
    rnn_cases(w)
    bidirectional_cases(w)
    embedding_cases(w)
    header = [
        "# Reference numbers from real Keras for lamina's sequence layers.",
        "# Generated by tools/keras_fixtures/make_rnn_fixtures.py; do not edit by hand.",
        "# keras %s, backend %s (jax %s, jaxlib %s), numpy %s, python %s" % (
            keras.__version__, keras.backend.backend(), jax.__version__,
            __import__("jaxlib").__version__, np.__version__, sys.version.split()[0]),
    ]
    text = "\n".join(header) + "\n" + FORMAT_DOC + "\n".join(w.lines) + "\n"
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        fh.write(text)
    print("wrote %s (%d bytes, %d cases)" % (OUT, len(text), sum(l.startswith("case ") for l in w.lines)))


if __name__ == "__main__":
    main()
