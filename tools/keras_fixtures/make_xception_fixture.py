"""Writes tests/fixtures/xception_layers.txt: Keras's Xception(weights=None, include_top=False)
layer by layer (name, class, parameter count), in model.layers order, for a fresh session.

    KERAS_BACKEND=jax python tools/keras_fixtures/make_xception_fixture.py
"""
import os

import keras

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "..", "tests", "fixtures", "xception_layers.txt")
keras.utils.clear_session()
model = keras.applications.Xception(weights=None, include_top=False)
with open(out, "w") as f:
    f.write(f"# keras {keras.__version__}: Xception(weights=None, include_top=False)\n")
    f.write("# name class params\n")
    f.write(f"total {model.count_params()}\n")
    for layer in model.layers:
        f.write(f"{layer.name} {layer.__class__.__name__} {layer.count_params()}\n")
