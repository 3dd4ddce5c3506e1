"""The flow-vs-v study's ratios: few calls over many per arm, flow over v per row."""

import pytest

from research.image.flow_vs_v import ARMS, ratios


def test_ratios_compare_few_calls_with_many_and_flow_with_v_at_each_row():
    v, flow = list(ARMS)
    rows = [
        {"arm": v, "sampler": "unipc", "calls": 5, "fid": 6.0},
        {"arm": v, "sampler": "unipc", "calls": 20, "fid": 4.0},
        {"arm": flow, "sampler": "unipc", "calls": 5, "fid": 3.0},
        {"arm": flow, "sampler": "unipc", "calls": 20, "fid": 3.0},
    ]
    r = ratios(rows)
    assert r[f"{v}, unipc: 5 / 20 calls"] == pytest.approx(1.5)
    assert r[f"{flow}, unipc: 5 / 20 calls"] == pytest.approx(1.0)
    assert r["flow / v, unipc, 5 calls"] == pytest.approx(0.5)
    assert r["flow / v, unipc, 20 calls"] == pytest.approx(0.75)
    assert len(r) == 4
