"""The one place TensorFlow and Keras are imported.

tensorflow-model-optimization works only with Keras 2 (`tf_keras`), so `TF_USE_LEGACY_KERAS=1` is
set before TensorFlow is imported and every model is built with `tf_keras`. TensorFlow's start-up
chatter (CUDA probing on machines without a GPU, absl pre-init warnings) is written straight to
file descriptor 2 by C++ code; it is swallowed during the import and shown only if the import fails.
"""

from __future__ import annotations

import os

from trainables.stderr import swallowed as stderr_swallowed

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


with stderr_swallowed():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "stderr_swallowed", "tf"]
