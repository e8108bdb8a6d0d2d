"""adapterhub.composition: the blocks (Stack, Parallel, Average, BatchSplit) and their dict form."""

from __future__ import annotations

import json

import pytest

from adapterhub import Average, BatchSplit, Parallel, Stack
from adapterhub.composition import as_block, block_from_dict
from adapterhub.errors import CompositionError


def test_blocks_round_trip_through_dict():
    setup = BatchSplit(Stack("a", "b"), Average("c", "d", weights=[3, 1]), "e", batch_sizes=[1, 2, 1])
    data = json.loads(json.dumps(setup.to_dict()))
    assert block_from_dict(data) == setup
    assert setup.names() == ["a", "b", "c", "d", "e"]


def test_average_normalises_weights_like_adapters():
    avg = Average("a", "b", weights=[3, 1])
    assert avg.weights == [0.75, 0.25]
    assert Average("a", "b").weights == [0.5, 0.5]
    with pytest.raises(CompositionError, match="sum to 0"):
        Average("a", "b", weights=[1, -1])
    with pytest.raises(CompositionError, match="2 adapters but 3 weights"):
        Average("a", "b", weights=[1, 1, 1])


def test_batch_split_validates_sizes():
    assert BatchSplit("a", "b", batch_sizes=2).batch_sizes == [2, 2]
    with pytest.raises(CompositionError, match="one non-negative size per adapter"):
        BatchSplit("a", "b", batch_sizes=[1])


def test_as_block_accepts_names_lists_and_blocks():
    assert as_block("a") == Stack("a")
    assert as_block(["a", "b"]) == Stack("a", "b")
    assert as_block(Parallel("a", "b")) == Parallel("a", "b")
    assert as_block(None) is None
    with pytest.raises(CompositionError):
        as_block(3)
    with pytest.raises(CompositionError, match="at least one adapter"):
        Stack()


