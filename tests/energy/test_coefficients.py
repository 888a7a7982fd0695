"""The coefficient file: every number sourced and ranged, every catalog device priced."""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest

from memwall.energy import coefficients_for, device_energy_class, load_table
from memwall.energy.coefficients import parse_table
from memwall.errors import MemwallError
from memwall.hardware import DTYPES, catalog_names, get_device


def raw() -> dict:
    return json.loads(resources.files("memwall.data").joinpath("energy.json").read_text("utf-8"))


def test_every_coefficient_has_a_source_a_basis_and_an_ordered_range():
    t = load_table()
    for name, c in t.classes.items():
        coeffs = [c.pj_per_flop_bf16, c.static_tdp_fraction, c.idle_tdp_fraction]
        coeffs += [c.pj_per_byte.dram, c.pj_per_byte.onchip, c.pj_per_byte.link]
        for x in coeffs:
            assert x.low <= x.value <= x.high, name
            assert len(x.source) > 20, name
            if x.basis == "fit":  # a fit says so, and names what it was fitted to
                assert "FIT" in x.source and "published_energy.csv" in x.source


def test_every_catalog_device_gets_finite_coefficients():
    for name in catalog_names():
        dev = get_device(name)
        for end in ("low", "value", "high"):
            c = coefficients_for(dev, end)
            assert all(math.isfinite(v) and v >= 0 for v in c.j_per_flop.values())
            assert set(c.j_per_flop) == set(DTYPES)
            assert all(math.isfinite(v) and v > 0 for v in c.j_per_byte.values())
            assert c.static_w >= 0 and (c.tdp_w is None or c.static_w < c.tdp_w)


def test_classes():
    assert device_energy_class(get_device("h100-sxm")) == "nvidia-hopper"
    assert device_energy_class(get_device("b200")) == "nvidia-blackwell"
    assert device_energy_class(get_device("a100-sxm-80gb")) == "gpu-hbm-7nm"
    assert device_energy_class(get_device("v100-sxm2-32gb")) == "gpu-hbm-12nm"
    assert device_energy_class(get_device("rtx-4090")) == "gpu-gddr"
    assert device_energy_class(get_device("apple-m2-max")) == "lpddr"
    assert device_energy_class(get_device("epyc-9654")) == "cpu-ddr"
    assert device_energy_class(get_device("h100-sxm@bw=2")) == "nvidia-hopper"


def test_hbm_costs_tens_of_picojoules_per_byte_and_a_flop_under_one():
    c = coefficients_for(get_device("h100-sxm"))
    assert 10e-12 < c.j_per_byte["dram"] < 100e-12
    assert c.per_flop("bf16") < 1.5e-12
    assert c.per_flop("fp8") < c.per_flop("bf16") < c.per_flop("fp32")


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["classes"]["nvidia-hopper"]["static_tdp_fraction"].update(low=0.9), "low"),
        (lambda d: d["classes"]["nvidia-hopper"]["pj_per_byte"]["dram"].pop("source"), "source"),
        (lambda d: d["dtype_ratio"].pop("fp8"), "fp8"),
        (lambda d: d["class_rules"].append({"class": "nowhere"}), "nowhere"),
        (
            lambda d: d["classes"]["nvidia-hopper"]["idle_tdp_fraction"].update(high=2, value=1.5),
            "fraction",
        ),
    ],
)
def test_a_bad_data_file_is_one_line(edit, needle):
    d = raw()
    edit(d)
    with pytest.raises(MemwallError, match=needle):
        parse_table(json.dumps(d))
    with pytest.raises(MemwallError, match="not valid JSON"):
        parse_table("{")
