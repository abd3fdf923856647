"""The book's diagrams: the scatter counts are a transposed convolution's, and every figure carries its labels."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from deconvlab import diagrams
from deconvlab.errors import ArgumentError


def _texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_overlap_counts_match_a_transposed_convolution_with_all_ones_weights():
    for k, s in ((3, 2), (4, 2), (3, 3), (5, 2)):
        layer = keras.layers.Conv2DTranspose(1, k, strides=s, padding="valid", use_bias=False,
                                             kernel_initializer="ones")
        out = keras.ops.convert_to_numpy(layer(np.ones((1, 2, 2, 1), "float32")))[0, ..., 0]
        np.testing.assert_array_equal(diagrams.overlap_counts(2, k, s), out.astype(int))


def test_overlap_is_even_in_the_interior_exactly_when_the_stride_divides_the_kernel():
    assert diagrams.overlap_counts(2, 3, 2).tolist()[2] == [2, 2, 4, 2, 2]
    interior = diagrams.overlap_counts(4, 4, 2)[2:-2, 2:-2]
    assert (interior == 4).all()
    assert len(np.unique(diagrams.overlap_counts(4, 3, 2)[2:-2, 2:-2])) > 1


def test_figures_carry_their_labels():
    assert "deconvolve" in _texts(diagrams.three_steps()) and "fuse" in _texts(diagrams.three_steps())
    strided = _texts(diagrams.encoder_decoder(levels=3, strided=True))
    assert strided.count("conv /2") == 2 and strided.count("deconv x2") == 2 and "global residual" in strided
    assert "/2" not in _texts(diagrams.encoder_decoder(levels=2, strided=False))
    scatter = _texts(diagrams.transposed_scatter(3, 2))
    assert "4" in scatter and "output 5×5" in scatter


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ArgumentError):
        diagrams.overlap_counts(2, bad, 2)
