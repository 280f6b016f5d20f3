"""Writes tests/fixtures/config/: real Keras's model.to_json() of the chapter's models
(the builders of make_chapter_fixture.py), Xception, and models that use every layer class
lamina has with non-default options, shared layers, nested models and layers with several
outputs; plus configs Keras accepts and lamina must refuse. tests/test_config.c loads each
with lm_model_from_json and checks that lm_model_to_json gives the same text back.

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_config_fixtures.py

Files: <name>.json (one model's to_json, as Keras wrote it), summary.txt (for each model:
'model <name> <total params> <trainable params>', then '  <layer> <class> <params>' in
model.layers order), refuse.txt ('refuse <name> <field>': the field lamina's error must
name; the model is in refuse_<name>.json).

k2_*.json are not made here: they are written by hand in tf.keras 2.x's layout (tf.keras is
not installed). Keras 3's legacy loader reads k2_functional.json, whose summary is added;
it fails on the other two (Bidirectional's inner layer and nested models' node indices in
the legacy layout), which lamina reads as tf.keras wrote them.
"""
import ast
import os
import platform

import jax
import keras
from keras import Input, Model, Sequential, initializers, layers as L
from keras.src.legacy.saving import saving_utils
import json

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "config")


def chapter_builders():
    """The builder functions of make_chapter_fixture.py, without running its main part."""
    path = os.path.join(HERE, "make_chapter_fixture.py")
    tree = ast.parse(open(path).read())
    tree.body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
    scope = {}
    exec(compile(tree, path, "exec"), scope)
    names = ["imdb_conv1d", "siamese_lstm", "question_answering", "posts", "separable_classifier", "inception", "mlp"]
    return [(f"chapter_{n}", scope[n]) for n in names]


def xception():
    return keras.applications.Xception(weights=None)


def conv2d_zoo():
    x = Input((16, 16, 3), name="image")
    a = L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu", use_bias=False,
                 kernel_initializer="he_normal", name="conv")(x)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dilation_rate=2,
                          depthwise_initializer=initializers.RandomNormal(0.0, 0.1),
                          bias_initializer="ones", name="depthwise")(a)
    c = L.SeparableConv2D(5, 3, depth_multiplier=2, strides=2, activation="tanh",
                          pointwise_initializer="lecun_normal", name="separable")(b)
    d = L.MaxPooling2D((2, 1), strides=(1, 1), padding="same", name="maxpool")(c)
    e = L.AveragePooling2D(2, name="avgpool")(d)
    f = L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False,
                             gamma_initializer=initializers.Constant(0.5), name="bn")(e)
    g1 = L.GlobalMaxPooling2D(name="gmax")(f)
    g2 = L.GlobalAveragePooling2D(name="gavg")(f)
    y = L.Concatenate(name="cat")([g1, g2])
    y = L.Dense(3, activation="softmax", name="out")(y)
    return Model(x, y, name="conv2d_zoo")


def conv1d_zoo():
    x = Input((20, 3), name="signal")
    a = L.Conv1D(4, 3, dilation_rate=2, padding="same", activation="elu", name="conv")(x)
    b = L.SeparableConv1D(6, 3, depth_multiplier=3, use_bias=False, name="separable")(a)
    c = L.MaxPooling1D(2, name="maxpool")(b)
    d = L.AveragePooling1D(3, strides=1, padding="same", name="avgpool")(c)
    e = L.LayerNormalization(epsilon=1e-6, scale=False, name="ln")(d)
    f = L.BatchNormalization(axis=1, name="bn_steps")(e)
    g1 = L.GlobalAveragePooling1D(name="gavg")(f)
    g2 = L.GlobalMaxPooling1D(name="gmax")(f)
    return Model(x, [g1, g2], name="conv1d_zoo")


def rnn_zoo():
    tokens = Input((None,), dtype="int32", name="tokens")
    e = L.Embedding(50, 8, mask_zero=True, name="embed")(tokens)
    a = L.LSTM(6, return_sequences=True, unit_forget_bias=False, recurrent_activation="tanh", name="lstm")(e)
    b = L.GRU(5, return_sequences=True, reset_after=False, go_backwards=True, name="gru")(a)
    c = L.SimpleRNN(4, return_sequences=True, activation="relu", use_bias=False, name="rnn")(b)
    d = L.Bidirectional(L.LSTM(3, kernel_initializer="glorot_normal"), merge_mode="sum", name="bi_lstm")(c)
    out, h, cell = L.LSTM(4, return_state=True, name="stateful_out")(c)
    f = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="ave", name="bi_gru")(c)
    g = L.Bidirectional(L.SimpleRNN(2), merge_mode="mul", name="bi_rnn")(f)
    h2 = L.Bidirectional(L.LSTM(2, return_state=True), name="bi_states")(c)
    gru_out, gru_h = L.GRU(3, return_state=True, name="gru_state")(f)
    return Model(tokens, [d, out, h, cell, g, *h2, gru_h], name="rnn_zoo")


def core_zoo():
    x = Input((12,), name="x")
    a = L.Dense(8, activation="gelu", kernel_initializer=initializers.RandomUniform(-0.2, 0.3),
                bias_initializer=initializers.Constant(-1.5), name="d1")(x)
    a = L.Dropout(0.4, seed=7, name="drop")(a)
    b = L.Reshape((2, -1), name="resh")(a)
    b = L.Activation("softplus", name="softplus")(b)
    b = L.Flatten(name="flat")(b)
    outs = []
    for act in ["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "softplus", "silu"]:
        outs.append(L.Dense(2, activation=act, name=f"act_{act}")(b))
    inits = [("glorot_uniform", "glorot_uniform"), ("glorot_normal", "glorot_normal"), ("he_uniform", "he_uniform"),
             ("he_normal", "he_normal"), ("lecun_uniform", "lecun_uniform"), ("lecun_normal", "lecun_normal"),
             ("orthogonal", initializers.Orthogonal(gain=0.5)), ("zeros", "zeros"), ("ones", "ones"),
             ("trunc", initializers.TruncatedNormal(1.0, 0.25)), ("normal", initializers.RandomNormal(-1.0, 3.0))]
    for tag, init in inits:
        outs.append(L.Dense(2, kernel_initializer=init, use_bias=tag != "zeros", name=f"init_{tag}")(b))
    m = L.Maximum(name="maximum")(outs[:3])
    s = L.Subtract(name="subtract")([outs[3], outs[4]])
    v = L.Average(name="average")([m, s, outs[5]])
    p = L.Multiply(name="multiply")([v, outs[6]])
    q = L.Add(name="add")(outs[7:])
    r = L.Concatenate(axis=-1, name="cat")([p, q])
    return Model(x, r, name="core_zoo")


def shared_nested():
    # A shared layer at two depths, a nested Functional whose output is the model's output
    # (node indices from 1 in output_layers), a nested Sequential called twice.
    inner_in = Input((4,), name="inner_in")
    inner = Model(inner_in, L.Dense(4, activation="tanh", name="inner_dense")(inner_in), name="inner")
    seq = Sequential([Input((4,), name="seq_in"), L.Dense(4, name="seq_d1"), L.Dropout(0.1, name="seq_drop"),
                      L.Dense(4, activation="relu", name="seq_d2")], name="seq")
    a_in = Input((4,), name="a")
    b_in = Input((4,), name="b")
    shared = L.Dense(4, name="shared")
    x = shared(a_in)
    y = shared(inner(b_in))
    z = shared(inner(x))
    w = seq(L.Add(name="sum")([y, z]))
    w2 = seq(w)
    return Model([a_in, b_in], [w2, inner(w), z], name="shared_nested")


def sequential_nested():
    ii = Input((6,), name="f_in")
    functional = Model(ii, L.Dense(3, name="f_dense")(ii), name="functional_block")
    inner = Sequential([Input((3,), name="s_in"), L.Dense(5, activation="sigmoid", name="s_dense")], name="inner_seq")
    return Sequential([Input((6,), name="outer_in"), functional, inner, L.Dense(1, name="head")], name="outer_seq")


def frozen_nested():
    ii = Input((3,), name="fi")
    block = Model(ii, L.Dense(3, name="fd")(ii), name="frozen_block")
    block.trainable = False
    x = Input((3,), name="x")
    bn = L.BatchNormalization(name="bn")
    bn.trainable = False
    y = bn(block(x))
    s = Input((5, 3), name="s")
    bi = L.Bidirectional(L.GRU(2), name="bi")  # Keras freezes the wrapped layers too
    bi.trainable = False
    return Model([x, s], [L.Dense(2, name="head")(y), bi(s)], name="frozen_nested")


def k2_functional():
    with open(os.path.join(OUT, "k2_functional.json")) as f:
        return saving_utils.model_from_config(json.load(f))


MODELS = chapter_builders() + [
    ("xception", xception), ("conv2d_zoo", conv2d_zoo), ("conv1d_zoo", conv1d_zoo), ("rnn_zoo", rnn_zoo),
    ("core_zoo", core_zoo), ("shared_nested", shared_nested), ("sequential_nested", sequential_nested),
    ("frozen_nested", frozen_nested),
]


def one_layer(layer, shape, dtype="float32"):
    x = Input(shape, dtype=dtype, name="x")
    return Model(x, layer(x), name="refused")


def minimum():
    x = Input((4,), name="x")
    return Model(x, L.Minimum(name="m")([x, x]), name="refused")


def masked_concatenate():
    # Concatenate merges its inputs' masks with ops (ExpandDims, ZerosLike, LogicalOr, Any)
    # that Keras 3 writes as nodes of the configuration; lamina rebuilds only NotEqual.
    a, b = Input((None,), dtype="int32", name="a"), Input((None,), dtype="int32", name="b")
    ea, eb = L.Embedding(10, 2, mask_zero=True, name="ea")(a), L.Embedding(10, 2, mask_zero=True, name="eb")(b)
    return Model([a, b], L.LSTM(2, name="l")(L.concatenate([ea, eb], name="c")), name="refused")


# Keras builds these; lamina refuses them, naming the field.
REFUSE = [
    ("causal", "padding", lambda: one_layer(L.Conv1D(2, 3, padding="causal", name="c"), (8, 2))),
    ("hard_sigmoid", "activation", lambda: one_layer(L.Dense(2, activation="hard_sigmoid", name="d"), (4,))),
    ("regularizer", "kernel_regularizer",
     lambda: one_layer(L.Dense(2, kernel_regularizer=keras.regularizers.L2(0.01), name="d"), (4,))),
    ("constraint", "kernel_constraint",
     lambda: one_layer(L.Dense(2, kernel_constraint=keras.constraints.MaxNorm(2.0), name="d"), (4,))),
    ("lstm_dropout", "dropout", lambda: one_layer(L.LSTM(2, dropout=0.5, name="l"), (5, 3))),
    ("channels_first", "data_format",
     lambda: one_layer(L.MaxPooling2D(2, data_format="channels_first", name="p"), (3, 8, 8))),
    ("init_seed", "kernel_initializer.seed",
     lambda: one_layer(L.Dense(2, kernel_initializer=initializers.GlorotUniform(seed=3), name="d"), (4,))),
    ("identity_init", "kernel_initializer",
     lambda: one_layer(L.Dense(2, kernel_initializer="identity", name="d"), (4,))),
    ("mixed_precision", "dtype", lambda: one_layer(L.Dense(2, dtype="mixed_float16", name="d"), (4,))),
    ("groups", "groups", lambda: one_layer(L.Conv2D(4, 3, groups=2, name="c"), (8, 8, 4))),
    ("rms_scaling", "rms_scaling", lambda: one_layer(L.LayerNormalization(rms_scaling=True, name="n"), (4,))),
    ("merge_none", "merge_mode", lambda: one_layer(L.Bidirectional(L.LSTM(2), merge_mode=None, name="b"), (5, 3))),
    ("unknown_class", "Minimum", minimum),
    ("masked_concatenate", "ExpandDims", masked_concatenate),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    header = (f"# keras {keras.__version__}, backend {keras.backend.backend()} (jax {jax.__version__}), "
              f"python {platform.python_version()}; made by tools/keras_fixtures/make_config_fixtures.py\n")
    with open(os.path.join(OUT, "summary.txt"), "w") as s:
        s.write(header)
        s.write("# model <name> <total params> <trainable params>, then '  <layer> <class> <params>'\n")
        for name, build in MODELS + [("k2_functional", k2_functional)]:
            keras.utils.clear_session()
            m = build()
            if not name.startswith("k2_"):
                with open(os.path.join(OUT, f"{name}.json"), "w") as f:
                    f.write(m.to_json())
            trainable = sum(int(w.numpy().size) for w in m.trainable_weights)
            s.write(f"model {name} {m.count_params()} {trainable}\n")
            for layer in m.layers:
                s.write(f"  {layer.name} {layer.__class__.__name__} {layer.count_params()}\n")
    with open(os.path.join(OUT, "refuse.txt"), "w") as r:
        r.write(header)
        r.write("# refuse <name> <field>: lamina refuses refuse_<name>.json with an error naming the field\n")
        for name, field, build in REFUSE:
            keras.utils.clear_session()
            m = build()
            with open(os.path.join(OUT, f"refuse_{name}.json"), "w") as f:
                f.write(m.to_json())
            r.write(f"refuse {name} {field}\n")


main()
