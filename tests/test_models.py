import pytest

from trainables.models import build_model


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_models_output_ten_logits_and_grow_with_width(architecture):
    narrow = build_model(architecture, width=16)
    wide = build_model(architecture, width=64)
    # Both architectures map a 28x28x1 image to 10 logits.
    assert narrow.output_shape == (None, 10)
    # Width is the size knob: a wider model has more parameters.
    assert wide.count_params() > narrow.count_params()


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="`architecture` must be one of"):
        build_model("transformer")
