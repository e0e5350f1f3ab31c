"""The one place TensorFlow and Keras are imported.

tensorflow-model-optimization works only with Keras 2 (`tf_keras`), so `TF_USE_LEGACY_KERAS=1` is
set before TensorFlow is imported and every model is built with `tf_keras`. TensorFlow's start-up
chatter (CUDA probing on machines without a GPU, absl pre-init warnings) is written straight to
file descriptor 2 by C++ code; it is swallowed during the import and shown only if the import fails.
"""

from __future__ import annotations

import os

from trainables.contract import TENSORFLOW_QUIET
from trainables.stderr import swallowed as stderr_swallowed

# Set on import, on purpose: this module is the one way into TensorFlow for the kit, so the
# settings TensorFlow reads at its import are decided here and nowhere else (a user's own win).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
for _name, _value in TENSORFLOW_QUIET.items():
    os.environ.setdefault(_name, _value)


with stderr_swallowed():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf"]
