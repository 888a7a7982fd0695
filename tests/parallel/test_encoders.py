"""Encoders (BERT, ViT) in `memwall parallel`: the plan prices their pass over the inputs, and
the energy beside it must too (it asked for a decoder's prefill and decode, so every encoder
answer failed with 'use --phase encode', an option `parallel` does not have)."""

from __future__ import annotations

import pytest

import memwall.api as api


@pytest.mark.parametrize("model", ["bert-base", "vit-base-patch16-224"])
def test_an_encoder_trains_and_infers_over_devices_with_its_energy(model):
    train = api.parallel(model=model, mode="train", devices=8).to_dict()
    assert train["energy"]["j_per_trained_token"] > 0
    infer = api.parallel(model=model, mode="infer", devices=8).to_dict()
    e = infer["energy"]
    assert e["j_per_input_token"] > 0 and "j_per_output_token" not in e
    assert infer["breakdown"]["prefill_compute"] > 0


def test_an_encoder_layout_search_answers():
    r = api.parallel(model="bert-base", mode="train", devices=8, search=True).to_dict()
    assert r["mfu"] > 0
