"""The one place TensorFlow and Keras are imported.

tensorflow-model-optimization works only with Keras 2 (`tf_keras`), so `TF_USE_LEGACY_KERAS=1` is
set before TensorFlow is imported and every model is built with `tf_keras`. TensorFlow's start-up
chatter (CUDA probing on machines without a GPU, absl pre-init warnings) is written straight to
file descriptor 2 by C++ code; it is swallowed during the import and shown only if the import fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def stderr_swallowed() -> Iterator[None]:
    """Redirect fd 2 to a temporary file; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with stderr_swallowed():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf"]
