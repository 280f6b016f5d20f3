"""Screenshots of TensorBoard's dashboards for docs/, taken with headless Chromium.

Usage (TensorBoard already serving the run on PORT, e.g. the chapter's example:
    imdb_tensorboard --samples 1500 --epochs 10 --logdir LOGS
    tensorboard --logdir LOGS --host 127.0.0.1 --port 6006):

    python tools/tensorboard/screenshots.py [--port 6006] [--out docs]

Needs Debian's chromium and the websocket-client package (the DevTools protocol is how a
script picks the "keras" tag: the Graphs dashboard opens on the op graph). Writes
tensorboard-{scalars,histograms,graph-op,graph-conceptual,projector}.png.
"""
import argparse
import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.request

import websocket  # websocket-client

# The Graphs dashboard's controls element (inside shadow roots): selecting the tag "keras"
# makes it switch to the conceptual graph, as a user's pick in the Tag menu does.
SELECT_KERAS_TAG = """
(function() {
  function walk(root) {
    for (const el of root.querySelectorAll('*')) {
      if (el.localName === 'tf-graph-controls') return el;
      if (el.shadowRoot) { const r = walk(el.shadowRoot); if (r) return r; }
    }
    return null;
  }
  const c = walk(document);
  if (!c || !c.datasets) return 'no graph controls';
  const run = c.datasets[c._selectedRunIndex];
  const i = run.tags.findIndex(t => t.tag === 'keras');
  if (i < 0) return 'no keras tag';
  c._selectedTagIndex = i;
  return c._selectedGraphType;
})()
"""

# The centre of the conceptual graph's one top-level node (the model's namespace).
MODEL_NODE_BOX = """
(function() {
  function walk(root) {
    for (const el of root.querySelectorAll('g.node')) return el;
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { const r = walk(el.shadowRoot); if (r) return r; }
    }
    return null;
  }
  const n = walk(document);
  if (!n) return null;
  const r = n.getBoundingClientRect();
  return {x: r.left + r.width / 2, y: r.top + r.height / 2};
})()
"""


class Page:
    def __init__(self, port):
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url, settle=8.0):
        self.call("Page.navigate", url=url)
        time.sleep(settle)

    def evaluate(self, expression, settle=6.0):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        time.sleep(settle)
        return r.get("result", {}).get("value")

    def double_click(self, x, y, settle=8.0):
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=count)
        time.sleep(settle)

    def shot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=6006)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--debug-port", type=int, default=9333)
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}/"
    profile = tempfile.mkdtemp(prefix="tb-chromium-")
    chrome = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,1000", f"--remote-debugging-port={args.debug_port}",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.debug_port}/json/version")
                break
            except OSError:
                time.sleep(0.2)
        page = Page(args.debug_port)
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        page.goto(base + "#scalars")
        page.shot(os.path.join(args.out, "tensorboard-scalars.png"))
        page.goto(base + "#histograms")
        page.shot(os.path.join(args.out, "tensorboard-histograms.png"))
        page.goto(base + "#graphs", settle=12)
        page.shot(os.path.join(args.out, "tensorboard-graph-op.png"))
        graph_type = page.evaluate(SELECT_KERAS_TAG, settle=10)
        if graph_type != "conceptual_graph":
            raise RuntimeError(f"could not select the conceptual graph: {graph_type}")
        # The model is drawn as one namespace node: open it with a double click.
        box = page.evaluate(MODEL_NODE_BOX, settle=0)
        if not box:
            raise RuntimeError("no model node in the conceptual graph")
        page.double_click(box["x"], box["y"])
        page.shot(os.path.join(args.out, "tensorboard-graph-conceptual.png"))
        page.goto(base + "#projector", settle=20)
        page.shot(os.path.join(args.out, "tensorboard-projector.png"))
    finally:
        chrome.terminate()
        chrome.wait()


if __name__ == "__main__":
    main()
