"""Regression (found by review, now fixed): Genesis.from_wire is not strict about its schema."""

import copy

import pytest

from services.ledger.core.errors import EncodingError
from services.ledger.core.genesis import Genesis
from services.ledger.sim.testnet import make_testnet

WIRE = make_testnet().genesis.to_wire()


@pytest.mark.parametrize("field", ["organisations", "keys", "validators"])
@pytest.mark.parametrize("item", [1, "x", None, []])
def test_non_object_items_are_encoding_errors(field, item):
    wire = copy.deepcopy(WIRE)
    wire[field] = [item]
    with pytest.raises(EncodingError):
        Genesis.from_wire(wire)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.update(extra=1),
        lambda w: w["organisations"][0].update(extra=1),
        lambda w: w["keys"][0].update(extra=1),
        lambda w: w["validators"][0].update(extra=1),
    ],
    ids=["top-level", "organisation", "key", "validator"],
)
def test_unknown_fields_are_refused(mutate):

    # so two different genesis documents share one genesis hash (prev_hash of block 1)
    wire = copy.deepcopy(WIRE)
    mutate(wire)
    with pytest.raises(EncodingError):
        Genesis.from_wire(wire)
