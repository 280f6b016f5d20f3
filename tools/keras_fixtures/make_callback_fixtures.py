#!/usr/bin/env python3
"""Writes tests/fixtures/keras_callbacks.txt: the decisions of real Keras 3's built-in
callbacks (EarlyStopping, ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN,
CSVLogger) on scripted logs. tests/test_callbacks.c replays the same logs through lamina's
callbacks and must decide the same: when training stops, which epoch's weights come back,
the learning rate of every epoch, the logs they add, the CSV file byte for byte, and every
message and warning, word for word. CI never runs this script, it only reads the committed
output.

Regenerate (outside the repository's build, with Keras on the JAX CPU backend):

    KERAS_BACKEND=jax /opt/keras-venv/bin/python tools/keras_fixtures/make_callback_fixtures.py

Each callback is attached to a tiny compiled model and driven the way fit drives it:
on_train_begin, then on_epoch_begin / on_epoch_end(epoch, logs) per epoch until
model.stop_training, then on_train_end (TerminateOnNaN: on_train_batch_end per batch).
Before each epoch's end the model's weights are all set to epoch + 1, so the weights left
after on_train_end tell which epoch EarlyStopping restored.
"""

import contextlib
import io
import math
import os
import sys
import tempfile
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "keras_callbacks.txt")

FORMAT_DOC = """\
# Format: see tests/fixtures/keras_core.txt. Here, besides float32 arrays:
#   attr keys <k1,k2,...>        the logs' keys, in order; array "logs" holds their values,
#                                one row per epoch (per batch for TerminateOnNaN)
#   attr <name>.<i> <text>       a text in pieces (i = 0, 1, ...), percent-encoded (%20 is a
#                                space, %0A a line end, %25 a percent sign): stdout (what
#                                the callback printed), warnings (Keras's warning messages,
#                                one a line), csv (the file), error (an exception's text)
#   attr <option> <value>        callback options as Python spells them (repr of floats;
#                                "None" for None); min_delta "default" when not given
"""


def f32(x):
    return float(np.float32(x))


def encode(text):
    out = []
    for ch in text:
        if ch in " %\r\n\t" or ord(ch) < 33 or ord(ch) > 126:
            out.append("".join("%%%02X" % b for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return out


class Writer:
    def __init__(self):
        self.lines = []

    def case(self, name, attrs, arrays=(), texts=None):
        self.lines.append("case %s" % name)
        for k, v in attrs.items():
            v = str(v)
            assert " " not in v and v and len(v) < 250, (k, v)
            self.lines.append("attr %s %s" % (k, v))
        for key, text in (texts or {}).items():
            pieces, cur = [], ""
            for tok in encode(text):  # never split a %XX
                if len(cur) + len(tok) > 200:
                    pieces.append(cur)
                    cur = ""
                cur += tok
            if cur:
                pieces.append(cur)
            for i, p in enumerate(pieces):
                self.lines.append("attr %s.%d %s" % (key, i, p))
        for aname, arr in arrays:
            a = np.asarray(arr, dtype=np.float32)
            self.lines.append("shape %s %d%s" % (aname, a.ndim, "".join(" %d" % d for d in a.shape)))
            flat = a.reshape(-1)
            self.lines.append("data %s %d %s" % (aname, flat.size, " ".join("%.9g" % float(v) for v in flat)))
        self.lines.append("end")


def tiny_model(lr):
    """Dense(2) on 3 features with the metrics whose direction Keras's "auto" looks up."""
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    model.compile(keras.optimizers.SGD(learning_rate=lr), "mse", metrics=["acc", "auc", "mae"])
    x = np.zeros((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    model.train_on_batch(x, y)  # builds the compiled metrics
    return model


def mark_weights(model, value):
    model.set_weights([np.full(w.shape, value, np.float32) for w in model.get_weights()])


@contextlib.contextmanager
def capture():
    """Collects stdout and the distinct warning messages (Python shows a repeat once)."""
    out = io.StringIO()
    got = []
    with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        yield out, got
    for m in w:
        if m.category is not UserWarning:  # numpy / jax deprecations are no callback's
            continue
        text = str(m.message)
        if text not in got:
            got.append(text)


def option_attrs(kwargs):
    attrs = {}
    for k, v in kwargs.items():
        if isinstance(v, bool):
            attrs[k] = int(v)
        elif isinstance(v, float):
            attrs[k] = repr(v)
        else:
            attrs[k] = v
    return attrs


# ---------------------------------------------------------------- logs
N_EPOCHS = 12
TRAIN_LOSS = [1.2, 1.0, 0.9, 0.85, 0.8, 0.78, 0.77, 0.78, 0.79, 0.8, 0.81, 0.82]
VAL_LOSS = [1.0, 0.8, 0.85, 0.79, 0.9, 0.7, 0.75, 0.76, 0.74, 0.78, 0.8, 0.81]
VAL_ACC = [0.5, 0.6, 0.6, 0.62, 0.61, 0.6, 0.7, 0.69, 0.705, 0.68, 0.67, 0.66]
SEQS = {
    "main": VAL_LOSS,
    "flat": [0.5] * N_EPOCHS,
    "nan": [math.nan, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
    # 0.8 + 0.05 is below 0.85 in double, but not in float32, where Keras compares
    "edge": [0.85, 0.8, 0.76, 0.75, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7],
}


def epoch_logs(seq):
    """keys and an epochs x keys matrix of float32 values."""
    keys = ["loss", "acc", "val_loss", "val_acc", "val_auc", "val_mae"]
    rows = []
    for e in range(N_EPOCHS):
        vl = SEQS[seq][e]
        rows.append([f32(v) for v in (TRAIN_LOSS[e], VAL_ACC[e] - 0.05, vl, VAL_ACC[e], VAL_ACC[e] + 0.1, vl / 2)])
    return keys, rows


def drive(cb, model, keys, rows, first_epoch=0):
    """fit's sequence of hooks; returns (epochs run, logs after each epoch end)."""
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin({})
    after = []
    ran = 0
    for e in range(first_epoch, len(rows)):
        cb.on_epoch_begin(e, {})
        mark_weights(model, e + 1)
        logs = dict(zip(keys, rows[e]))
        cb.on_epoch_end(e, logs)
        after.append(logs)
        ran += 1
        if model.stop_training:
            break
    cb.on_train_end({})
    return ran, after


# ---------------------------------------------------------------- EarlyStopping
EARLY_STOPPING = [
    ("patience0", "main", {}),
    ("patience2", "main", {"patience": 2}),
    ("min_delta", "main", {"patience": 2, "min_delta": 0.05}),
    ("min_delta_negative", "main", {"patience": 2, "min_delta": -0.05}),
    ("min_delta_float32", "edge", {"patience": 1, "min_delta": 0.05}),
    ("restore", "main", {"patience": 3, "restore_best_weights": True}),
    ("restore_never_stops", "main", {"patience": 20, "restore_best_weights": True}),
    ("restore_quiet", "main", {"patience": 2, "restore_best_weights": True, "verbose": 0}),
    ("baseline", "main", {"patience": 2, "baseline": 0.75}),
    ("baseline_restore", "main", {"patience": 2, "baseline": 0.75, "restore_best_weights": True}),
    ("baseline_zero", "main", {"patience": 2, "baseline": 0.0}),
    ("baseline_beaten", "main", {"patience": 1, "baseline": 0.95}),
    ("start_from_epoch", "main", {"patience": 1, "start_from_epoch": 3}),
    ("start_from_epoch_restore", "main", {"start_from_epoch": 2, "restore_best_weights": True}),
    ("initial_epoch", "main", {"first_epoch": 3}),
    ("acc_auto", "main", {"monitor": "val_acc", "patience": 1}),
    ("acc_max_min_delta", "main", {"monitor": "val_acc", "mode": "max", "patience": 2, "min_delta": 0.01}),
    ("acc_as_min", "main", {"monitor": "val_acc", "mode": "min", "patience": 1}),
    ("acc_baseline_restore", "main",
     {"monitor": "val_acc", "patience": 3, "baseline": 0.65, "restore_best_weights": True}),
    ("loss_as_max", "main", {"mode": "max", "patience": 2}),
    ("auc_auto", "main", {"monitor": "val_auc", "patience": 2}),
    ("mae_auto", "main", {"monitor": "val_mae", "patience": 1}),
    ("train_loss", "main", {"monitor": "loss", "patience": 1}),
    ("flat", "flat", {"patience": 2}),
    ("nan_first", "nan", {"patience": 2, "restore_best_weights": True}),
    ("missing_monitor", "main", {"monitor": "val_f1", "mode": "min"}),
    ("unknown_mode", "main", {"mode": "maximum", "patience": 1}),
]


def early_stopping(w):
    for name, seq, kw in EARLY_STOPPING:
        kw = dict(kw)
        first_epoch = kw.pop("first_epoch", 0)
        kw.setdefault("verbose", 1)
        keys, rows = epoch_logs(seq)
        model = tiny_model(0.1)
        mark_weights(model, 0)
        with capture() as (out, warns):
            cb = keras.callbacks.EarlyStopping(**kw)
            ran, _ = drive(cb, model, keys, rows, first_epoch)
        restored = float(model.get_weights()[0].flat[0])
        attrs = {"monitor": "val_loss", "mode": "auto", "baseline": "None"}
        attrs.update(option_attrs(kw))
        attrs.update({"first_epoch": first_epoch, "keys": ",".join(keys), "ran": ran,
                      "stopped_epoch": cb.stopped_epoch, "weights_after": repr(restored)})
        w.case("early_stopping/" + name, attrs, [("logs", rows)],
               {"stdout": out.getvalue(), "warnings": "".join(m + "\n" for m in warns)})


# ---------------------------------------------------------------- ReduceLROnPlateau
PLATEAU = [1.0, 0.9, 0.9, 0.9, 0.89995, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
PLATEAU_ACC = [0.5, 0.6, 0.6, 0.6, 0.65, 0.65, 0.65, 0.7, 0.7, 0.7, 0.7, 0.7, 0.75, 0.75, 0.75, 0.75]
REDUCE_LR = [
    ("factor_half_patience2", {"factor": 0.5, "patience": 2}),
    ("cooldown", {"factor": 0.5, "patience": 2, "cooldown": 2}),
    ("cooldown_patience1", {"factor": 0.3, "patience": 1, "cooldown": 1}),
    ("min_lr", {"factor": 0.1, "patience": 1, "min_lr": 0.002}),
    ("min_lr_reached", {"factor": 0.5, "patience": 1, "min_lr": 0.03}),
    ("defaults", {}),
    ("patience0", {"patience": 0, "factor": 0.5}),
    ("min_delta_default_tiny_gain", {"factor": 0.5, "patience": 3}),
    ("min_delta_zero", {"factor": 0.5, "patience": 3, "min_delta": 0.0}),
    ("min_delta_large", {"factor": 0.5, "patience": 2, "min_delta": 0.05}),
    ("acc_auto", {"monitor": "val_acc", "factor": 0.2, "patience": 1}),
    ("acc_as_min", {"monitor": "val_acc", "mode": "min", "factor": 0.2, "patience": 2}),
    ("train_loss_quiet", {"monitor": "loss", "factor": 0.5, "patience": 1, "verbose": 0}),
    ("missing_monitor", {"monitor": "val_f1", "mode": "max", "patience": 1}),
    ("unknown_mode", {"mode": "maximum", "factor": 0.5, "patience": 2}),
]


def reduce_lr(w):
    keys = ["loss", "val_loss", "val_acc"]
    rows = [[f32(1.5 - 0.05 * e), f32(PLATEAU[e]), f32(PLATEAU_ACC[e])] for e in range(len(PLATEAU))]
    for name, kw in REDUCE_LR:
        kw = dict(kw)
        kw.setdefault("verbose", 1)
        model = tiny_model(0.1)
        lr_after = []
        with capture() as (out, warns):
            cb = keras.callbacks.ReduceLROnPlateau(**kw)
            cb.set_model(model)
            cb.on_train_begin({})
            logged = []
            for e in range(len(rows)):
                cb.on_epoch_begin(e, {})
                logs = dict(zip(keys, rows[e]))
                cb.on_epoch_end(e, logs)
                logged.append(logs["learning_rate"])
                lr_after.append(float(np.array(model.optimizer.learning_rate)))
            cb.on_train_end({})
        attrs = {"monitor": "val_loss", "mode": "auto", "min_delta": "default", "lr0": "0.1"}
        attrs.update(option_attrs(kw))
        attrs["keys"] = ",".join(keys)
        w.case("reduce_lr/" + name, attrs, [("logs", rows), ("logged_lr", logged), ("lr_after", lr_after)],
               {"stdout": out.getvalue(), "warnings": "".join(m + "\n" for m in warns)})
    for factor in (1.0, 2.5):
        try:
            keras.callbacks.ReduceLROnPlateau(factor=factor)
            raise AssertionError("no error")
        except ValueError as e:
            w.case("reduce_lr/bad_factor_%s" % repr(factor).replace(".", "_"), {"factor": repr(factor)},
                   texts={"error": str(e)})


# ---------------------------------------------------------------- LearningRateScheduler
SCHEDULES = {
    "halve_from_2": lambda epoch, lr: lr * 0.5 if epoch >= 2 else lr,
    "inverse": lambda epoch, lr: 0.1 / (epoch + 1),
    "exp_decay": lambda epoch, lr: lr * math.exp(-0.1),
    "step": lambda epoch, lr: 0.05 if epoch < 4 else 0.005,
}
LR_SCHEDULER = [
    ("halve_from_2", {"verbose": 1}, 0),
    ("inverse", {"verbose": 1}, 0),
    ("exp_decay", {"verbose": 1}, 0),
    ("step", {"verbose": 1}, 2),
    ("exp_decay_quiet", {"verbose": 0}, 0),
]


def lr_scheduler(w):
    keys = ["loss", "val_loss"]
    rows = [[f32(1.0 / (e + 1)), f32(1.2 / (e + 1))] for e in range(6)]
    for name, kw, first_epoch in LR_SCHEDULER:
        schedule = name.replace("_quiet", "")
        model = tiny_model(0.1)
        with capture() as (out, warns):
            cb = keras.callbacks.LearningRateScheduler(SCHEDULES[schedule], **kw)
            ran, after = drive(cb, model, keys, rows, first_epoch)
        logged = [logs["learning_rate"] for logs in after]
        attrs = {"schedule": schedule, "first_epoch": first_epoch, "lr0": "0.1", "keys": ",".join(keys)}
        attrs.update(option_attrs(kw))
        w.case("lr_scheduler/" + name, attrs, [("logs", rows), ("logged_lr", logged)],
               {"stdout": out.getvalue(), "warnings": "".join(m + "\n" for m in warns)})


# ---------------------------------------------------------------- TerminateOnNaN
TERMINATE = [
    ("nan", [0.5, 0.4, math.nan, 0.3], {}),
    ("inf", [0.5, math.inf, 0.3], {}),
    ("finite", [0.5, 0.4, 0.3], {}),
    ("raise_error", [0.5, -math.inf, 0.3], {"raise_error": True}),
    ("raise_error_nan", [math.nan], {"raise_error": True}),
]


def terminate_on_nan(w):
    for name, losses, kw in TERMINATE:
        model = tiny_model(0.1)
        error = ""
        with capture() as (out, warns):
            cb = keras.callbacks.TerminateOnNaN(**kw)
            cb.set_model(model)
            model.stop_training = False
            cb.on_train_begin({})
            ran = 0
            for b, loss in enumerate(losses):
                cb.on_train_batch_begin(b, {})
                ran += 1
                try:
                    cb.on_train_batch_end(b, {"loss": loss, "acc": 0.5})
                except RuntimeError as e:
                    error = str(e)
                    break
                if model.stop_training:
                    break
            if not error:
                cb.on_train_end({})
        attrs = option_attrs(kw)
        attrs.update({"keys": "loss,acc", "ran": ran, "stopped": int(bool(model.stop_training or error))})
        w.case("terminate_on_nan/" + name, attrs, [("logs", [[f32(v), 0.5] for v in losses])],
               {"stdout": out.getvalue(), "error": error})


# ---------------------------------------------------------------- CSVLogger
# Values are given as Python floats (repr'd into the fixture, read back exactly by strtod):
# they exercise Python's float formatting.
CSV_VALUES = [0.1, 1 / 3, 1e-05, 123456789.0, 1e16, 2.5e-07, f32(0.1), math.nan, math.inf, -0.0,
              100.0, 1e22, 0.0001, -1.5, 1e15, 0.30000000000000004]
BASIC = [{"loss": CSV_VALUES[3 * e], "acc": CSV_VALUES[3 * e + 1], "val_loss": CSV_VALUES[3 * e + 2],
          "val_acc": CSV_VALUES[(3 * e + 7) % len(CSV_VALUES)]} for e in range(5)]
NO_VAL = [{"loss": 0.5 / (e + 1), "acc": 0.25 * e} for e in range(3)]
QUOTED = [{"a;b": 1.0, 'say "hi"': 2.0, "val_x": 0.5}, {"a;b": 3.0, 'say "hi"': 4.0, "val_x": 0.25}]
CHANGING = [{"loss": 0.5, "acc": 0.1, "val_loss": 0.6}, {"loss": 0.4, "val_loss": 0.55, "new": 1.0},
            {"acc": 0.3}]
CSV_LOGGER = [
    # name, options, initial file content (None: no file), runs (first epoch, logs per epoch)
    ("basic", {}, None, [(0, BASIC)]),
    ("no_val_keys", {}, None, [(0, NO_VAL)]),
    ("separator_and_quoting", {"separator": ";"}, None, [(0, QUOTED)]),
    ("keys_change", {}, None, [(0, CHANGING)]),
    ("empty_logs", {}, None, [(0, [{}, {"loss": 1.0}])]),
    ("append_existing", {"append": True}, "epoch,loss\r\n0,1.0\r\n", [(1, NO_VAL[:2])]),
    ("append_empty_file", {"append": True}, "", [(0, NO_VAL[:2])]),
    ("append_no_file", {"append": True}, None, [(0, NO_VAL[:2])]),
    ("two_runs_overwrite", {}, None, [(0, NO_VAL[:2]), (2, NO_VAL[1:])]),
    ("two_runs_append", {"append": True}, None, [(0, NO_VAL[:2]), (2, BASIC[:2])]),
    ("overwrite_existing", {}, "old,content\r\n", [(0, NO_VAL[:1])]),
]


def csv_logger(w):
    for name, kw, initial, runs in CSV_LOGGER:
        model = tiny_model(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "log.csv")
            if initial is not None:
                with open(path, "w", newline="") as f:
                    f.write(initial)
            cb = keras.callbacks.CSVLogger(path, **kw)
            cb.set_model(model)
            for first, epochs in runs:
                cb.on_train_begin({})
                for i, logs in enumerate(epochs):
                    cb.on_epoch_begin(first + i, {})
                    cb.on_epoch_end(first + i, dict(logs))
                cb.on_train_end({})
            with open(path, "rb") as f:
                content = f.read().decode("utf-8")
        attrs = {"separator": kw.get("separator", ","), "append": int(kw.get("append", False)), "runs": len(runs)}
        texts = {"csv": content}
        if initial is not None:
            attrs["initial"] = 1
            texts["initial"] = initial
        for r, (first, epochs) in enumerate(runs):
            attrs["run%d.first" % r] = first
            attrs["run%d.epochs" % r] = len(epochs)
            for i, logs in enumerate(epochs):
                # one "key<TAB>repr(value)" line per key, in the logs' order
                texts["run%d.logs%d" % (r, i)] = "".join("%s\t%r\n" % (k, v) for k, v in logs.items())
        w.case("csv_logger/" + name, attrs, texts=texts)


def main():
    w = Writer()
    early_stopping(w)
    reduce_lr(w)
    lr_scheduler(w)
    terminate_on_nan(w)
    csv_logger(w)
    header = [
        "# Decisions of real Keras's built-in callbacks on scripted logs, for lamina's.",
        "# Generated by tools/keras_fixtures/make_callback_fixtures.py; do not edit by hand.",
        "# keras %s, backend %s, numpy %s, python %s" % (
            keras.__version__, keras.backend.backend(), np.__version__, sys.version.split()[0]),
    ]
    with open(OUT, "w") as fp:
        fp.write("\n".join(header) + "\n" + FORMAT_DOC + "\n".join(w.lines) + "\n")
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
