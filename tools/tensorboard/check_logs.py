"""Checks a lamina TensorBoard run with TensorBoard's own readers (pip package tensorboard).

Usage: python check_logs.py LOGDIR EXPECTED.json

EXPECTED.json is written by tests/tensorboard/tb_run.c next to the logs: the History, the
learning rate, the model's layers and its final weights. The logs are read the way the
TensorBoard server reads them (plugin_event_multiplexer + its data provider, size guidance
0 = keep everything), and compared with it:

- every record of every event file has valid masked CRC-32C, and the first is
  file_version "brain.Event:2";
- train/ and validation/ hold epoch_<key> for every History key (val_ stripped into
  validation/), at steps 0..epochs-1, equal to the History as float32;
  epoch_learning_rate; batch_<key> every update_freq batches;
  evaluation_<key>_vs_iterations at the optimizer's step counts;
- a histogram "<layer>/<weight>/histogram" for every weight at every epoch, the last equal
  to TensorBoard's own histogram of the final weights (histogram_pb), and images
  "<layer>/<weight>/image" for the weights Keras draws;
- the "keras" graph blob (plugin graph_keras_model, content b"1") parses as JSON with the
  model's layers, and TensorBoard's graph plugin turns it into a GraphDef with a node per
  layer and the expected edges;
- projector_config.pbtxt parses as a ProjectorConfig, and each Embedding's tensor_path
  resolves inside LOGDIR to the final embedding matrix.

Exits 0 when all hold; prints each failure otherwise.
"""
import glob
import json
import os
import struct
import sys

import numpy as np
from google.protobuf import text_format
from tensorboard import context
from tensorboard.backend.event_processing import data_provider as dp
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.compat.proto import event_pb2, graph_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.plugins.graph import keras_util
from tensorboard.plugins.histogram import summary_v2 as histogram_summary
from tensorboard.plugins.projector import projector_config_pb2
from tensorboard.plugins.projector import projector_plugin
from tensorboard.util import tensor_util

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def read_records(path):
    """Every record of a TFRecord file, checking both CRCs of each."""
    records = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        if not check(pos + 12 <= len(data), f"{path}: truncated header at byte {pos}"):
            break
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        check(len_crc == pywrap_tensorflow.masked_crc32c(header), f"{path}: bad length CRC at byte {pos}")
        body = data[pos + 12:pos + 12 + length]
        if not check(len(body) == length and pos + 16 + length <= len(data), f"{path}: truncated record at {pos}"):
            break
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        check(data_crc == pywrap_tensorflow.masked_crc32c(body), f"{path}: bad data CRC at byte {pos}")
        records.append(body)
        pos += 16 + length
    return records


def check_files(logdir):
    files = sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True))
    check(files, f"no event files under {logdir}")
    total = 0
    for path in files:
        records = read_records(path)
        check(records, f"{path}: no records")
        if records:
            first = event_pb2.Event.FromString(records[0])
            check(first.file_version == "brain.Event:2", f"{path}: first record is not brain.Event:2")
        events = [event_pb2.Event.FromString(r) for r in records]
        n_values = sum(len(e.summary.value) for e in events)
        has_graph = any(e.graph_def for e in events)
        total += len(records)
        # EventAccumulator silently drops a file whose first record is corrupt: count.
        acc = ea.EventAccumulator(path, size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE})
        acc.Reload()
        seen = sum(len(acc.Tensors(t)) for t in acc.Tags()["tensors"])
        check(seen == n_values, f"{path}: EventAccumulator saw {seen} values, file has {n_values}")
        check(acc.Tags()["graph"] == has_graph, f"{path}: EventAccumulator graph {acc.Tags()['graph']}")
    return total


def main():
    logdir, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        exp = json.load(f)
    epochs, steps, update_freq = exp["epochs"], exp["steps_per_epoch"], exp["update_freq"]
    history = exp["history"]
    n_records = check_files(logdir)

    mux = pem.EventMultiplexer(size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE},
                               tensor_size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                     "graph_keras_model": 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = dp.MultiplexerDataProvider(mux, logdir)
    ctx = context.RequestContext()
    runs = sorted(r.run_name for r in provider.list_runs(ctx, experiment_id=""))
    check(runs == ["train", "validation"], f"runs are {runs}, expected train and validation")

    # ---- Scalars ----
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=100000)

    def series(run, tag):
        data = scalars.get(run, {}).get(tag)
        check(data is not None, f"missing scalar {run}/{tag}")
        return data or []

    for key, values in history.items():
        run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
        data = series(run, f"epoch_{name}")
        check([d.step for d in data] == list(range(epochs)), f"{run}/epoch_{name}: steps {[d.step for d in data]}")
        got = [d.value for d in data]
        want = [float(np.float32(v)) for v in values]
        check(got == want, f"{run}/epoch_{name}: {got} != History {want}")
    lr = series("train", "epoch_learning_rate")
    check([d.value for d in lr] == [float(np.float32(exp["learning_rate"]))] * epochs,
          f"epoch_learning_rate: {[d.value for d in lr]}")
    batch_steps = list(range(update_freq, epochs * steps + 1, update_freq))
    for key in history:
        if key.startswith("val_"):
            continue
        data = series("train", f"batch_{key}")
        check([d.step for d in data] == batch_steps, f"batch_{key}: steps {[d.step for d in data]} != {batch_steps}")
        data = series("validation", f"evaluation_{key}_vs_iterations")
        check([d.step for d in data] == [steps * (e + 1) for e in range(epochs)],
              f"evaluation_{key}_vs_iterations: steps {[d.step for d in data]}")
        check([d.value for d in data] == [float(np.float32(v)) for v in history["val_" + key]],
              f"evaluation_{key}_vs_iterations: values differ from val_{key}")

    # ---- Histograms and images ----
    histograms = provider.read_tensors(ctx, experiment_id="", plugin_name="histograms", downsample=100000).get("train", {})
    images = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="images").get("train", {})
    for path, w in exp["weights"].items():
        tag = f"{path}/histogram"
        data = histograms.get(tag)
        if not check(data is not None, f"missing histogram {tag}"):
            continue
        check([d.step for d in data] == list(range(0, epochs, exp["histogram_freq"])), f"{tag}: steps")
        last = data[-1].numpy
        check(last.shape == (30, 3), f"{tag}: shape {last.shape}")
        values = np.array(w["values"], dtype=np.float32)
        ref = tensor_util.make_ndarray(histogram_summary.histogram_pb(tag, values).value[0].tensor)
        check(np.array_equal(last, ref), f"{tag}: last histogram differs from TensorBoard's histogram_pb:\n{last}\n{ref}")
        check(last[:, 2].sum() == values.size, f"{tag}: counts sum to {last[:, 2].sum()}, not {values.size}")
        squeezed = [d for d in w["shape"] if d != 1]
        if len(squeezed) in (1, 2, 3):
            check(f"{path}/image" in images, f"missing image {path}/image")

    # ---- The conceptual graph ----
    graphs = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="graph_keras_model")
    meta = graphs.get("train", {}).get("keras")
    if check(meta is not None, "no 'keras' graph in train"):
        check(meta.plugin_content == b"1", f"graph plugin content {meta.plugin_content!r}")
        blobs = provider.read_blob_sequences(ctx, experiment_id="", plugin_name="graph_keras_model", downsample=10)
        blob_ref = blobs["train"]["keras"][0].values[0]
        config = json.loads(provider.read_blob(ctx, blob_key=blob_ref.blob_key))
        check(config["class_name"] == "Functional", f"graph class {config['class_name']}")
        names = [l["config"]["name"] for l in config["config"]["layers"]]
        want = [l["name"] for l in exp["layers"]]
        check(names == want, f"graph layers {names} != model layers {want}")
        graph = keras_util.keras_model_to_graph_def(config)
        scope = config["config"]["name"] + "/"  # the plugin scopes nodes by model name
        nodes = {n.name: n for n in graph.node}
        check(sorted(nodes) == sorted(scope + n for n in want), f"GraphDef nodes {sorted(nodes)}")
        for layer in config["config"]["layers"]:
            name = scope + layer["config"]["name"]
            inputs = [scope + h["config"]["keras_history"][0] for node in layer["inbound_nodes"]
                      for a in node["args"] for h in (a if isinstance(a, list) else [a])]
            if name in nodes:
                check(list(nodes[name].input) == inputs, f"GraphDef {name} inputs {list(nodes[name].input)} != {inputs}")
                check(nodes[name].attr["keras_class"].s.decode() == layer["class_name"], f"{name}: keras_class")

    # ---- The op graph (Event.graph_def, as Keras with TensorFlow writes) ----
    op_graphs = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="graphs").get("train", {})
    if check("__run_graph__" in op_graphs, "no op graph (__run_graph__) in train"):
        blobs = provider.read_blob_sequences(ctx, experiment_id="", plugin_name="graphs", downsample=10)
        ref = blobs["train"]["__run_graph__"][0].values[0]
        graph = graph_pb2.GraphDef.FromString(provider.read_blob(ctx, blob_key=ref.blob_key))
        names = [n.name for n in graph.node]
        check(len(set(names)) == len(names), "op graph: duplicate node names")
        for n in graph.node:
            for i in n.input:
                check(i.split(":")[0] in names, f"op graph: {n.name} reads unknown {i}")
        for path in exp["weights"]:
            check(path in names, f"op graph: no weight node {path}")

    # ---- Projector ----
    config_path = os.path.join(logdir, "projector_config.pbtxt")
    embeddings = [l["name"] for l in exp["layers"] if l["class_name"] == "Embedding"]
    if embeddings and check(os.path.exists(config_path), "no projector_config.pbtxt"):
        config = projector_config_pb2.ProjectorConfig()
        with open(config_path) as f:
            text_format.Parse(f.read(), config)
        by_name = {e.tensor_name: e for e in config.embeddings}
        for layer in embeddings:
            e = by_name.get(f"{layer}/embeddings")
            if not check(e is not None, f"projector: no embedding for {layer}"):
                continue
            tsv = projector_plugin._rel_to_abs_asset_path(e.tensor_path, config_path)
            tensor = projector_plugin._read_tensor_tsv_file(tsv)
            w = exp["weights"][f"{layer}/embeddings"]
            want = np.array(w["values"], dtype=np.float32).reshape(w["shape"])
            check(np.array_equal(tensor, want), f"projector: {tsv} differs from the final embeddings")

    if failures:
        print(f"{len(failures)} check(s) failed:")
        for f in failures:
            print(" -", f)
        return 1
    print(f"TensorBoard logs OK: {n_records} records, runs {runs}, {len(history)} History keys, "
          f"{len(exp['weights'])} weights, {len(embeddings)} embedding(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
