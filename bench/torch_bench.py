"""PyTorch anchor for the lamina benchmark: one model, one process, one JSON line on stdout.

Run (venv made by bench/setup_anchors.sh; PyTorch is the PyPI `torch` wheel):
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296 \
    /opt/bench-venv/bin/python bench/torch_bench.py --model A [--warmup 5] [--steps 20] [--threads 2]

Models A..F, F1024 mirror keras_bench.py layer for layer (same trainable parameter counts;
given Keras' weights they give Keras' outputs to ~1e-7), written the way a PyTorch user
would: eager mode, logits + CrossEntropyLoss / BCEWithLogitsLoss in place of softmax /
sigmoid heads, NCHW images in channels_last memory format where that is faster (see
CHANNELS_LAST). Keras 'same' padding of E's stride-2 3x3 convs (odd element at the end) is
an explicit F.pad; its 'same' average pool is avg_pool2d(ceil_mode, count_include_pad=False).
Times: train = zero_grad + forward + loss + backward + RMSprop step; predict = eval() +
no_grad forward. Threads: torch.set_num_threads(N), set_num_interop_threads(1).
"""
import sys

sys.dont_write_bytecode = True  # keep bench/ free of __pycache__
import anchors_common as ac  # noqa: E402

args = ac.parse_args(lambda p: p.add_argument(
    "--channels-last", choices=["auto", "on", "off"], default="auto",
    help="memory format for the image models B and E (auto: the faster one, measured)"))

import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)

# Measured on the 2-core bench machine: channels_last was about 2x faster for B and
# 1.2-1.4x for E than contiguous NCHW (train step), and no slower for predict.
CHANNELS_LAST = {"B": True, "E": True}


class ModelA(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(2000, 128)
        self.c1, self.c2 = nn.Conv1d(128, 32, 7), nn.Conv1d(32, 32, 7)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        h = self.emb(x).transpose(1, 2)  # (N, L, C) -> (N, C, L)
        h = F.max_pool1d(F.relu(self.c1(h)), 5)
        h = F.relu(self.c2(h)).amax(dim=2)
        return self.out(h)


def separable(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cin, 3, groups=cin, bias=False), nn.Conv2d(cin, cout, 1),
                         nn.ReLU())


class ModelB(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            separable(3, 32), separable(32, 64), nn.MaxPool2d(2),
            separable(64, 64), separable(64, 128), nn.MaxPool2d(2),
            separable(128, 64), separable(64, 128))
        self.d1, self.d2 = nn.Linear(128, 32), nn.Linear(32, 10)

    def forward(self, x):
        h = self.features(x).mean(dim=(2, 3))
        return self.d2(F.relu(self.d1(h)))


class ModelC(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 32, batch_first=True)
        # Keras' LSTM has one bias vector, PyTorch's two: keep b_hh at zero and frozen so the
        # trainable parameters and the arithmetic match Keras.
        nn.init.zeros_(self.lstm.bias_hh_l0)
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.out = nn.Linear(64, 1)

    def forward(self, a, b):
        ha = self.lstm(a)[1][0][-1]  # last hidden state, shared weights
        hb = self.lstm(b)[1][0][-1]
        return self.out(torch.cat([ha, hb], dim=1))


class ModelD(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50000, 256)
        self.convs = nn.ModuleList([nn.Conv1d(256, 128, 5), nn.Conv1d(128, 256, 5),
                                    nn.Conv1d(256, 256, 5), nn.Conv1d(256, 256, 5),
                                    nn.Conv1d(256, 256, 5)])
        self.dense = nn.Linear(256, 128)
        self.age, self.income, self.gender = nn.Linear(128, 1), nn.Linear(128, 10), nn.Linear(128, 1)

    def forward(self, x):
        c = self.convs
        h = self.emb(x).transpose(1, 2)
        h = F.max_pool1d(F.relu(c[0](h)), 5)
        h = F.max_pool1d(F.relu(c[2](F.relu(c[1](h)))), 5)
        h = F.relu(c[4](F.relu(c[3](h)))).amax(dim=2)
        h = F.relu(self.dense(h))
        return self.age(h), self.income(h), self.gender(h)


class ModelE(nn.Module):
    def __init__(self, f=128):
        super().__init__()
        self.a = nn.Conv2d(3, f, 1)  # used with stride 2, see forward
        self.b1, self.b2 = nn.Conv2d(3, f, 1), nn.Conv2d(f, f, 3, stride=2)
        self.c = nn.Conv2d(3, f, 3, padding=1)
        self.d1, self.d2, self.d3 = nn.Conv2d(3, f, 1), nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, stride=2)
        self.out = nn.Linear(4 * f, 10)

    def forward(self, x):
        pad = lambda t: F.pad(t, (0, 1, 0, 1))  # Keras 'same', stride 2, 3x3 on even size
        # 1x1 conv with stride 2 == 1x1 conv of x[::2, ::2]; written so because PyTorch 2.15's
        # backward of a channels_last 1x1 stride-2 conv segfaults (oneDNN path).
        a = F.relu(self.a(x[:, :, ::2, ::2]))
        b = F.relu(self.b2(pad(F.relu(self.b1(x)))))
        # 'same' avg pool: windows start at 0, the last one is cut at the edge and averages
        # only the real elements, which is what ceil_mode + count_include_pad=False do.
        p = F.avg_pool2d(x, 3, 2, ceil_mode=True, count_include_pad=False)
        c = F.relu(self.c(p))
        d = F.relu(self.d3(pad(F.relu(self.d2(F.relu(self.d1(x)))))))
        h = torch.cat([a, b, c, d], dim=1).mean(dim=(2, 3))
        return self.out(h)


def model_f():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def build(name):
    """Returns (model, loss_fn(outputs, targets))."""
    ce, bce, mse = nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss(), nn.MSELoss()
    if name == "A":
        return ModelA(), lambda o, y: bce(o, y[0])
    if name == "B":
        return ModelB(), lambda o, y: ce(o, y[0])
    if name == "C":
        return ModelC(), lambda o, y: bce(o, y[0])
    if name == "D":
        return ModelD(), lambda o, y: 0.25 * mse(o[0], y[0]) + ce(o[1], y[1]) + 10.0 * bce(o[2], y[2])
    if name == "E":
        return ModelE(), lambda o, y: ce(o, y[0])
    return model_f(), lambda o, y: ce(o, y[0])


def to_torch(inputs, targets, channels_last):
    xs = []
    for x in inputs:
        t = torch.from_numpy(x)
        if x.dtype == np.int32:
            t = t.long()
        elif x.ndim == 4:  # NHWC -> NCHW
            t = t.permute(0, 3, 1, 2).contiguous(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        xs.append(t)
    ys = []
    for y in targets:
        if y.shape[1] > 1:  # one-hot -> class index for CrossEntropyLoss
            ys.append(torch.from_numpy(y.argmax(axis=1)).long())
        else:
            ys.append(torch.from_numpy(y))
    return xs, ys


def main():
    name = args.model
    base = "F" if name == "F1024" else name
    cl = (CHANNELS_LAST.get(base, False) if args.channels_last == "auto"
          else args.channels_last == "on") and base in ("B", "E")
    model, loss_fn = build(base)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    xs, ys = to_torch(*ac.make_data(name), cl)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.RMSprop([p for p in model.parameters() if p.requires_grad],
                              lr=1e-3, alpha=0.9, eps=1e-7)

    def train_step():
        opt.zero_grad()
        loss = loss_fn(model(*xs), ys)
        loss.backward()
        opt.step()

    def predict_step():
        with torch.no_grad():
            model(*xs)

    cfg = torch.__config__.show()
    blas, mkl, dnn = ((re.search(p, cfg) or [None, "?"])[1] for p in
                      (r"BLAS_INFO=(\w+)", r"Math Kernel Library Version (\S+)", r"MKL-DNN (v[\d.]+)"))
    notes = (f"PyPI torch wheel (pip install torch), eager; threads intra {torch.get_num_threads()} "
             f"inter {torch.get_num_interop_threads()}; BLAS {blas} (MKL {mkl}); mkldnn available "
             f"{torch.backends.mkldnn.is_available()} (oneDNN {dnn}); "
             f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
             + (f"; images {'channels_last' if cl else 'NCHW contiguous'}" if base in ("B", "E") else ""))
    ac.log(f"torch {torch.__version__} model {name} params {params}")

    model.train()
    rss_before = ac.rss_now_mb()
    train = ac.time_steps(train_step, args.warmup, args.steps)
    model.eval()
    predict = ac.time_steps(predict_step, args.warmup, args.steps)
    ac.report(args, "pytorch", torch.__version__, params, train, predict, rss_before, notes)


if __name__ == "__main__":
    main()
