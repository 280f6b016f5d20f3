"""Keras 3 anchor for the lamina benchmark: one model, one process, one JSON line on stdout.

Run (venv made by bench/setup_anchors.sh, which holds all three backends):
    /opt/bench-venv/bin/python bench/keras_bench.py --model A [--warmup 5] [--steps 20] \
        [--threads 2] [--backend tensorflow|jax|torch] [--jit-compile auto|true|false]

The models A..F, F1024 are built with the functional API, channels-last, and compiled with
RMSprop() and Keras' default jit_compile="auto" (Keras 3.15 resolves it to XLA on jax and to
a plain tf.function without XLA on tensorflow; torch runs eagerly). Times: train =
model.train_on_batch(x, y), predict = model.predict_on_batch(x), called step by step the way
a Keras user would.
Backend: tensorflow (tensorflow-cpu, oneDNN) is the default: in one pass over all models
on this 2-core machine (busy, so ratios are rough) it was the fastest on every model but
F1024 (jax about 1 ms ahead); jax was 1.3-13x slower (worst B: XLA's depthwise convs), the
torch backend 1.5-65x (worst C: its LSTM). Exception: for E, TF 2.21's oneDNN kernels
segfault in the training step (as PyTorch's do: a 1x1 stride-2 conv on NHWC), so on
tensorflow E is compiled with jit_compile=True (XLA), the faster of the two working options
(TF_ENABLE_ONEDNN_OPTS=0 was 1.5x slower). XLA for all models was 1.4x slower on A and 28x
on B, hence Keras' default elsewhere.
Threads: the process is pinned to N CPUs with sched_setaffinity (what taskset does; a no-op
when N is the machine's core count), which sizes XLA's CPU thread pool on jax; tensorflow
gets intra-op N / inter-op 1 threads, torch set_num_threads(N) / set_num_interop_threads(1).
"""
import os
import sys

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
import anchors_common as ac  # noqa: E402


def extra_args(p):
    p.add_argument("--backend", choices=["tensorflow", "jax", "torch"], default="tensorflow")
    p.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto",
                   help="model.compile(jit_compile=...); auto: Keras' default, except E on "
                        "tensorflow, which gets XLA (see the header)")


args = ac.parse_args(extra_args)

ac.pin_cpus(args.threads)
os.environ["KERAS_BACKEND"] = args.backend
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# The venv holds all three backends; hide the two not in use (as if not installed), else
# tensorflow imports jax on its own (tflite) and the RSS counts a second runtime.
for other in {"jax", "torch", "tensorflow"} - {args.backend}:
    sys.modules[other] = None

if args.backend == "torch":
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    backend_version = torch.__version__
elif args.backend == "tensorflow":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    backend_version = tf.__version__
else:
    import jax
    backend_version = jax.__version__

import keras
import numpy as np
from keras import layers


def sep(f):
    return layers.SeparableConv2D(f, 3, activation="relu")


def build(name):
    """Returns (model, loss, loss_weights)."""
    if name == "A":
        x = keras.Input((500,), dtype="int32")
        h = layers.Embedding(2000, 128)(x)
        h = layers.MaxPooling1D(5)(layers.Conv1D(32, 7, activation="relu")(h))
        h = layers.GlobalMaxPooling1D()(layers.Conv1D(32, 7, activation="relu")(h))
        return keras.Model(x, layers.Dense(1, activation="sigmoid")(h)), "binary_crossentropy", None
    if name == "B":
        x = keras.Input((64, 64, 3))
        h = layers.MaxPooling2D(2)(sep(64)(sep(32)(x)))
        h = layers.MaxPooling2D(2)(sep(128)(sep(64)(h)))
        h = layers.GlobalAveragePooling2D()(sep(128)(sep(64)(h)))
        h = layers.Dense(32, activation="relu")(h)
        return keras.Model(x, layers.Dense(10, activation="softmax")(h)), "categorical_crossentropy", None
    if name == "C":
        a, b = keras.Input((100, 128)), keras.Input((100, 128))
        lstm = layers.LSTM(32)  # one layer, shared by both inputs
        h = layers.concatenate([lstm(a), lstm(b)])
        return keras.Model([a, b], layers.Dense(1, activation="sigmoid")(h)), "binary_crossentropy", None
    if name == "D":
        x = keras.Input((500,), dtype="int32")
        h = layers.Embedding(50000, 256)(x)
        h = layers.MaxPooling1D(5)(layers.Conv1D(128, 5, activation="relu")(h))
        h = layers.Conv1D(256, 5, activation="relu")(h)
        h = layers.MaxPooling1D(5)(layers.Conv1D(256, 5, activation="relu")(h))
        h = layers.Conv1D(256, 5, activation="relu")(h)
        h = layers.GlobalMaxPooling1D()(layers.Conv1D(256, 5, activation="relu")(h))
        h = layers.Dense(128, activation="relu")(h)
        outs = [layers.Dense(1, name="age")(h),
                layers.Dense(10, activation="softmax", name="income")(h),
                layers.Dense(1, activation="sigmoid", name="gender")(h)]
        return (keras.Model(x, outs), ["mse", "categorical_crossentropy", "binary_crossentropy"],
                [0.25, 1.0, 10.0])
    if name == "E":
        x = keras.Input((64, 64, 3))
        conv = lambda h, k, s=1: layers.Conv2D(128, k, strides=s, padding="same", activation="relu")(h)
        a = conv(x, 1, 2)
        b = conv(conv(x, 1), 3, 2)
        c = conv(layers.AveragePooling2D(3, strides=2, padding="same")(x), 3)
        d = conv(conv(conv(x, 1), 3), 3, 2)
        h = layers.GlobalAveragePooling2D()(layers.concatenate([a, b, c, d], axis=-1))
        return keras.Model(x, layers.Dense(10, activation="softmax")(h)), "categorical_crossentropy", None
    x = keras.Input((64,))  # F, F1024
    h = layers.Dense(32, activation="relu")(layers.Dense(32, activation="relu")(x))
    return keras.Model(x, layers.Dense(10, activation="softmax")(h)), "categorical_crossentropy", None


def main():
    name = args.model
    model, loss, weights = build("F" if name == "F1024" else name)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    if jit == "auto" and args.backend == "tensorflow" and name == "E":
        jit = True  # TF 2.21's oneDNN kernels segfault in E's backward; XLA's do not
    model.compile(optimizer=keras.optimizers.RMSprop(), loss=loss, loss_weights=weights,
                  jit_compile=jit)
    xs, ys = ac.make_data(name)
    x = xs[0] if len(xs) == 1 else xs
    y = ys[0] if len(ys) == 1 else ys
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    ac.log(f"keras {keras.__version__} {args.backend} {backend_version} model {name} params {params}")

    rss_before = ac.rss_now_mb()
    train = ac.time_steps(lambda: model.train_on_batch(x, y), args.warmup, args.steps)
    predict = ac.time_steps(lambda: model.predict_on_batch(x), args.warmup, args.steps)
    notes = (f"backend {args.backend}, jit_compile={model.jit_compile} (asked {jit}); "
             f"pinned to CPUs {sorted(os.sched_getaffinity(0))}")
    ac.report(args, "keras", f"{keras.__version__}/{args.backend} {backend_version}", params,
              train, predict, rss_before, notes)


if __name__ == "__main__":
    main()
