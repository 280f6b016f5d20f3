#!/usr/bin/env python3
"""Writes tests/fixtures/saving/keras/: the chapter's models as real Keras 3 saves them,
for tests/test_saving.c to load with lamina.

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_saving_fixtures.py [model ...]

For each model: <name>.keras (model.save), <name>.h5 (the legacy format, model.save) and
<name>.npz holding
    x0, x1 ...  the inputs, in model.inputs order
    y0, y1 ...  targets, in model.outputs order
    p0, p1 ...  Keras's predictions of the inputs by the saved model
    q0, q1 ...  Keras's predictions after one more train_on_batch(x, y) from the saved
                state: they depend on the optimizer's saved slots and iteration count
                (absent for models with dropout, whose masks differ between libraries)
Each model was trained for two steps before saving, with the optimizer named below, so
that its optimizer state is not the initial one. The architectures are the chapter's, with
smaller vocabularies, sequence lengths and widths to keep the files small; a small shared
convolutional base stands in for Xception in the dual-camera model. CI never runs this
script; it reads the committed files.
"""

import os
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import Input, Model, layers  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "saving", "keras")
rng = np.random.default_rng(2024)


def ints(shape, hi):
    return rng.integers(0, hi, size=shape).astype("int32")


def floats(shape):
    return rng.uniform(-1, 1, size=shape).astype("float32")


def mlp():
    x = Input((16,))
    y = layers.Dense(8, activation="relu")(x)
    y = layers.Dense(8, activation="relu")(y)
    m = Model(x, layers.Dense(4, activation="softmax")(y))
    m.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["acc"])
    return m, [floats((4, 16))], [np.eye(4, dtype="float32")]


def imdb_conv1d():
    x = Input((100,), dtype="int32")
    y = layers.Embedding(500, 8)(x)
    y = layers.Conv1D(8, 7, activation="relu")(y)
    y = layers.MaxPooling1D(5)(y)
    y = layers.Conv1D(8, 7, activation="relu")(y)
    y = layers.GlobalMaxPooling1D()(y)
    m = Model(x, layers.Dense(1)(y))
    m.compile(keras.optimizers.RMSprop(0.01), "mse")
    return m, [ints((4, 100), 500)], [floats((4, 1))]


def siamese_lstm():
    lstm = layers.LSTM(8)
    left, right = Input((None, 16)), Input((None, 16))
    merged = layers.concatenate([lstm(left), lstm(right)], axis=-1)
    m = Model([left, right], layers.Dense(1, activation="sigmoid")(merged))
    m.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), "binary_crossentropy", metrics=["acc"])
    return m, [floats((4, 5, 16)), floats((4, 5, 16))], [np.array([[0], [1], [1], [0]], "float32")]


def question_answering():
    text = Input((None,), dtype="int32", name="text")
    t = layers.LSTM(8)(layers.Embedding(500, 8)(text))
    question = Input((None,), dtype="int32", name="question")
    q = layers.LSTM(4)(layers.Embedding(500, 4)(question))
    answer = layers.Dense(20, activation="softmax")(layers.concatenate([t, q], axis=-1))
    m = Model([text, question], answer)
    m.compile(keras.optimizers.Adagrad(0.1), "sparse_categorical_crossentropy", metrics=["acc"])
    return m, [ints((4, 12), 500), ints((4, 6), 500)], [np.array([3, 7, 0, 19], "float32")]


def posts():
    posts_input = Input((None,), dtype="int32", name="posts")
    x = layers.Embedding(500, 8)(posts_input)
    x = layers.Conv1D(8, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(8, 5, activation="relu")(x)
    x = layers.Conv1D(8, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(8, 5, activation="relu")(x)
    x = layers.Conv1D(8, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(8, activation="relu")(x)
    age = layers.Dense(1, name="age")(x)
    income = layers.Dense(10, activation="softmax", name="income")(x)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
    m = Model(posts_input, [age, income, gender])
    m.compile(keras.optimizers.AdamW(0.01),
              loss={"age": "mse", "income": "categorical_crossentropy", "gender": "binary_crossentropy"},
              loss_weights=[0.25, 1.0, 10.0], metrics={"income": ["acc"], "gender": ["acc"]})
    income_y = np.zeros((4, 10), "float32")
    income_y[np.arange(4), [1, 5, 9, 2]] = 1
    return m, [ints((4, 270), 500)], [floats((4, 1)), income_y, np.array([[1], [0], [0], [1]], "float32")]


def separable_classifier():
    x = Input((32, 32, 3))
    y = layers.SeparableConv2D(8, 3, activation="relu")(x)
    y = layers.SeparableConv2D(8, 3, activation="relu")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.SeparableConv2D(8, 3, activation="relu")(y)
    y = layers.SeparableConv2D(16, 3, activation="relu")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.SeparableConv2D(8, 3, activation="relu")(y)
    y = layers.SeparableConv2D(16, 3, activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(8, activation="relu")(y)
    m = Model(x, layers.Dense(10, activation="softmax")(y))
    m.compile(keras.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy", metrics=["acc"])
    return m, [floats((2, 32, 32, 3))], [np.array([4, 9], "float32")]


def inception():
    x = Input((8, 8, 3))
    a = layers.Conv2D(8, 1, activation="relu", strides=2, padding="same")(x)
    b = layers.Conv2D(8, 1, activation="relu", padding="same")(x)
    b = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(b)
    c = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    c = layers.Conv2D(8, 3, activation="relu", padding="same")(c)
    d = layers.Conv2D(8, 1, activation="relu", padding="same")(x)
    d = layers.Conv2D(8, 3, activation="relu", padding="same")(d)
    d = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(d)
    y = layers.concatenate([a, b, c, d], axis=-1)
    y = layers.GlobalAveragePooling2D()(y)
    m = Model(x, layers.Dense(10, activation="softmax")(y))
    m.compile(keras.optimizers.RMSprop(0.005), "categorical_crossentropy")
    return m, [floats((3, 8, 8, 3))], [np.eye(10, dtype="float32")[[1, 2, 3]]]


def residual():
    x = Input((8, 8, 8))
    conv = lambda t: layers.Conv2D(8, 3, activation="relu", padding="same")(t)  # noqa: E731
    y = layers.add([conv(conv(conv(x))), x])
    z = layers.MaxPooling2D(2, strides=2)(conv(conv(y)))
    z = layers.add([z, layers.Conv2D(8, 1, strides=2, padding="same")(y)])
    m = Model(x, layers.Dense(1)(layers.GlobalAveragePooling2D()(z)), name="residual")
    m.compile(keras.optimizers.Adam(0.005), "mse")
    return m, [floats((3, 8, 8, 8))], [floats((3, 1))]


def dual_camera():
    # Xception's pattern on a small scale: one convolutional base, a model, called on both
    # cameras (its weights shared), with batch normalization and depthwise separable convs.
    img = Input((12, 12, 3))
    f = layers.Conv2D(8, 3, strides=2, use_bias=False)(img)
    f = layers.BatchNormalization()(f)
    f = layers.Activation("relu")(f)
    f = layers.SeparableConv2D(8, 3, padding="same", use_bias=False)(f)
    f = layers.BatchNormalization()(f)
    f = layers.DepthwiseConv2D(3, padding="same")(f)
    base = Model(img, f, name="base")
    left, right = Input((12, 12, 3), name="left"), Input((12, 12, 3), name="right")
    merged = layers.concatenate([base(left), base(right)], axis=-1)
    distance = layers.Dense(1, name="distance")(layers.GlobalAveragePooling2D()(merged))
    m = Model([left, right], distance, name="dual_camera")
    m.compile(keras.optimizers.Adam(0.01), "mse")
    return m, [floats((3, 12, 12, 3)), floats((3, 12, 12, 3))], [floats((3, 1))]


def bidirectional_rnn():
    x = Input((None,), dtype="int32")
    y = layers.Embedding(100, 6)(x)
    y = layers.Bidirectional(layers.GRU(4, return_sequences=True))(y)
    y = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum")(y)
    y = layers.SimpleRNN(5)(y)
    m = Model(x, layers.Dense(2, activation="softmax")(y))
    m.compile(keras.optimizers.RMSprop(0.01), "categorical_crossentropy", metrics=["acc"])
    return m, [ints((4, 7), 100)], [np.eye(2, dtype="float32")[[0, 1, 1, 0]]]


def padded(shape, hi, lengths):
    """Token ids in [1, hi) with zeros after each row's length and one zero inside."""
    x = rng.integers(1, hi, size=shape).astype("int32")
    for i, n in enumerate(lengths):
        x[i, n:] = 0
        x[i, n // 2] = 0
    return x


def masked_rnn():
    # Embedding(mask_zero=True): Keras 3 writes each mask into the configuration as a
    # NotEqual(indices, 0) op node, passed to the layers that use it as a "mask" argument.
    text = Input((None,), dtype="int32", name="text")
    t = layers.Embedding(60, 6, mask_zero=True)(text)
    t = layers.Bidirectional(layers.GRU(4, return_sequences=True))(t)
    t = layers.Dense(5, activation="tanh")(t)  # carries the mask on
    t = layers.LSTM(3, return_sequences=True)(t)
    t = layers.SimpleRNN(4)(t)
    question = Input((None,), dtype="int32", name="question")
    q = layers.LSTM(3)(layers.Embedding(60, 4, mask_zero=True)(question))
    m = Model([text, question], layers.Dense(3, activation="softmax")(layers.concatenate([t, q])))
    m.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", metrics=["acc"])
    return (m, [padded((4, 9), 60, [9, 6, 3, 7]), padded((4, 5), 60, [5, 2, 4, 3])],
            [np.eye(3, dtype="float32")[[0, 2, 1, 2]]])


def sequential():
    inner = keras.Sequential([Input((12,)), layers.Dense(6, activation="tanh"), layers.LayerNormalization()],
                             name="inner")
    m = keras.Sequential([Input((3, 4)), layers.Flatten(), inner, layers.BatchNormalization(), layers.Dropout(0.2),
                          layers.Reshape((2, 3)), layers.Dense(2)], name="stack")
    m.compile(keras.optimizers.SGD(0.05), "mae")
    return m, [floats((4, 3, 4))], [floats((4, 2, 2))]


BUILDERS = [mlp, imdb_conv1d, siamese_lstm, question_answering, posts, separable_classifier, inception, residual,
            dual_camera, bidirectional_rnn, sequential, masked_rnn]


def as_list(v):
    return v if isinstance(v, list) else [v]


def main():
    # Names on the command line: write only those models (all are still built, in order, so
    # that each one's random data is the same as in a full run).
    only = set(sys.argv[1:])
    unknown = only - {b.__name__ for b in BUILDERS}
    if unknown:
        sys.exit(f"no such model: {', '.join(sorted(unknown))}")
    os.makedirs(OUT, exist_ok=True)
    for build in BUILDERS:
        keras.utils.clear_session()
        keras.utils.set_random_seed(7)
        m, xs, ys = build()
        has_dropout = any(isinstance(lr, layers.Dropout) for lr in m._flatten_layers())
        for _ in range(2):
            m.train_on_batch(xs, ys)
        name = build.__name__
        if only and name not in only:
            continue
        m.save(os.path.join(OUT, name + ".keras"))
        m.save(os.path.join(OUT, name + ".h5"))
        # Keras stores the members of .keras uncompressed; deflating them keeps the fixture
        # small, and the file stays one that Keras (and lamina) reads.
        path = os.path.join(OUT, name + ".keras")
        with zipfile.ZipFile(path) as z:
            members = [(i, z.read(i.filename)) for i in z.infolist()]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for info, data in members:
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        arrays = {}
        for i, x in enumerate(xs):
            arrays[f"x{i}"] = x
        for i, y in enumerate(ys):
            arrays[f"y{i}"] = y
        for i, p in enumerate(as_list(m.predict(xs, verbose=0))):
            arrays[f"p{i}"] = np.asarray(p, "float32")
        if not has_dropout:
            m.train_on_batch(xs, ys)
            for i, q in enumerate(as_list(m.predict(xs, verbose=0))):
                arrays[f"q{i}"] = np.asarray(q, "float32")
        np.savez(os.path.join(OUT, name + ".npz"), **arrays)
        # The files must read back in Keras itself.
        keras.models.load_model(os.path.join(OUT, name + ".keras"))
        print(f"{name}: {m.count_params()} params", file=sys.stderr)
    with open(os.path.join(OUT, "README"), "w") as f:
        f.write(f"Made by tools/keras_fixtures/make_saving_fixtures.py with keras {keras.__version__} "
                f"({keras.backend.backend()} backend); see its docstring.\n")


if __name__ == "__main__":
    main()
