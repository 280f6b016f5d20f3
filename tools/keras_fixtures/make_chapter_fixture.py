"""Writes tests/fixtures/chapter_models.txt: the parameter counts of the chapter's models as
real Keras builds them (layer by layer, in model.layers order).

    KERAS_BACKEND=jax python tools/keras_fixtures/make_chapter_fixture.py

The book's listings have two typos that Keras 3 rejects or that change the meaning:
Embedding's arguments are (input_dim, output_dim), and the Inception branches need
padding="same" to be concatenated; both are fixed here as in lamina's examples.
"""
import os

import keras
from keras import Input, Model, layers


def imdb_conv1d():
    x = Input((500,), dtype="int32")
    y = layers.Embedding(2000, 128)(x)
    y = layers.Conv1D(32, 7, activation="relu")(y)
    y = layers.MaxPooling1D(5)(y)
    y = layers.Conv1D(32, 7, activation="relu")(y)
    y = layers.GlobalMaxPooling1D()(y)
    return Model(x, layers.Dense(1)(y))


def siamese_lstm():
    lstm = layers.LSTM(32)
    left, right = Input((None, 128)), Input((None, 128))
    merged = layers.concatenate([lstm(left), lstm(right)], axis=-1)
    return Model([left, right], layers.Dense(1, activation="sigmoid")(merged))


def question_answering():
    text = Input((None,), dtype="int32", name="text")
    t = layers.LSTM(32)(layers.Embedding(10000, 64)(text))
    question = Input((None,), dtype="int32", name="question")
    q = layers.LSTM(16)(layers.Embedding(10000, 32)(question))
    answer = layers.Dense(500, activation="softmax")(layers.concatenate([t, q], axis=-1))
    return Model([text, question], answer)


def posts():
    posts_input = Input((None,), dtype="int32", name="posts")
    x = layers.Embedding(50000, 256)(posts_input)
    x = layers.Conv1D(128, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.Conv1D(256, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation="relu")(x)
    age = layers.Dense(1, name="age")(x)
    income = layers.Dense(10, activation="softmax", name="income")(x)
    gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
    return Model(posts_input, [age, income, gender])


def separable_classifier():
    x = Input((64, 64, 3))
    y = layers.SeparableConv2D(32, 3, activation="relu")(x)
    y = layers.SeparableConv2D(64, 3, activation="relu")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.SeparableConv2D(64, 3, activation="relu")(y)
    y = layers.SeparableConv2D(128, 3, activation="relu")(y)
    y = layers.MaxPooling2D(2)(y)
    y = layers.SeparableConv2D(64, 3, activation="relu")(y)
    y = layers.SeparableConv2D(128, 3, activation="relu")(y)
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(32, activation="relu")(y)
    return Model(x, layers.Dense(10, activation="softmax")(y))


def inception():
    x = Input((64, 64, 3))
    a = layers.Conv2D(128, 1, activation="relu", strides=2, padding="same")(x)
    b = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
    b = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(b)
    c = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    c = layers.Conv2D(128, 3, activation="relu", padding="same")(c)
    d = layers.Conv2D(128, 1, activation="relu", padding="same")(x)
    d = layers.Conv2D(128, 3, activation="relu", padding="same")(d)
    d = layers.Conv2D(128, 3, activation="relu", strides=2, padding="same")(d)
    y = layers.concatenate([a, b, c, d], axis=-1)
    y = layers.GlobalAveragePooling2D()(y)
    return Model(x, layers.Dense(10, activation="softmax")(y))


def mlp():
    x = Input((64,))
    y = layers.Dense(32, activation="relu")(x)
    y = layers.Dense(32, activation="relu")(y)
    return Model(x, layers.Dense(10, activation="softmax")(y))


here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "..", "..", "tests", "fixtures", "chapter_models.txt"), "w") as f:
    f.write(f"# keras {keras.__version__}: parameter counts of the chapter's models\n")
    f.write("# model <name> <total> <trainable>, then one line per layer: <class> <params>\n")
    for build in (imdb_conv1d, siamese_lstm, question_answering, posts, separable_classifier, inception, mlp):
        keras.utils.clear_session()
        m = build()
        trainable = sum(int(w.numpy().size) for w in m.trainable_weights)
        f.write(f"model {build.__name__} {m.count_params()} {trainable}\n")
        for layer in m.layers:
            f.write(f"  {layer.__class__.__name__} {layer.count_params()}\n")
