"""Hardware choices in one place: which tf.distribute strategy a trial trains under."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


def strategy_for_visible_devices() -> tf.distribute.Strategy:
    """Pick the strategy that fits the devices this process can see.

    No GPU: the default strategy (one CPU replica). One GPU: `OneDeviceStrategy` on it. Several
    GPUs: `MirroredStrategy` over all of them. Under Ray, the visible GPUs are exactly the ones Ray
    assigned to the trial (it sets `CUDA_VISIBLE_DEVICES`).
    """
    from trainables._keras import tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
