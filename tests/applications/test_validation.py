"""`validation.obtain_input_shape` gives keras.applications' answers (shapes, errors, warnings)."""

import warnings

import pytest

from keras_effconv.applications import validation as V

_SHAPE_CASES = [
    # input_shape, default_size, min_size, data_format, require_flatten, pretrained
    (None, 224, 32, "channels_last", True, False),
    (None, 224, 32, "channels_last", False, False),
    (None, 224, 32, "channels_first", False, True),
    ((224, 224, 3), 224, 32, "channels_last", True, True),
    ((160, 160, 3), 224, 32, "channels_last", True, True),
    ((160, 160, 3), 224, 32, "channels_last", False, True),
    ((160, 160, 1), 224, 32, "channels_last", False, True),
    ((160, 160, 1), 224, 32, "channels_last", False, False),
    ((160, 160, 5), 224, 32, "channels_last", True, False),
    ((3, 160, 160), 224, 32, "channels_first", False, True),
    ((1, 160, 160), 224, 32, "channels_first", False, True),
    ((16, 16, 3), 224, 32, "channels_last", False, False),
    ((3, 16, 16), 224, 32, "channels_first", False, False),
    ((None, None, 3), 224, 32, "channels_last", False, True),
    ((None, None, 3), 224, 32, "channels_last", True, False),
    ((None, 64, 3), 224, 32, "channels_last", False, False),
    ((64, 3), 224, 32, "channels_last", False, False),
]


@pytest.mark.parametrize("case", _SHAPE_CASES)
def test_obtain_input_shape_matches_keras(case):
    keras_utils = pytest.importorskip("keras.src.applications.imagenet_utils")
    input_shape, default_size, min_size, data_format, require_flatten, pretrained = case

    def run(fn, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = fn(input_shape, default_size, min_size, data_format, require_flatten, **kw)
            except ValueError as e:
                out = ("error", str(e))
        return out, len(caught)

    ours = run(V.obtain_input_shape, pretrained=pretrained)
    theirs = run(keras_utils.obtain_input_shape, weights="imagenet" if pretrained else None)
    assert ours == theirs
