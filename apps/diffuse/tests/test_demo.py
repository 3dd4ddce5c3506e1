from diffcore.generation import steps_for_calls
from diffcore.samplers import SAMPLERS
from diffuse.cli import main
from diffuse.demo import sampler_study


def test_demo_writes_a_picture_and_a_table(tmp_path, capsys):
    assert main(["demo", "--toy", "--out", str(tmp_path), "--n", "500", "--calls", "10"]) == 0
    printed = capsys.readouterr().out
    for name in SAMPLERS:
        assert f"| {name} |" in printed
    png = (tmp_path / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert (tmp_path / "table.md").read_text().count("\n") == 2 + len(SAMPLERS) + 1


def test_study_spends_the_stated_network_calls_and_improves_with_more():
    rows, _, floor = sampler_study(samplers=("heun", "dpmpp_2m"), calls=(5, 41), n=1000)
    by = {(r.sampler, r.network_calls): r.distance for r in rows}
    assert set(by) == {("heun", 5), ("heun", 41), ("dpmpp_2m", 5), ("dpmpp_2m", 41)}
    assert by[("heun", 41)] < by[("heun", 5)] and by[("dpmpp_2m", 41)] < by[("dpmpp_2m", 5)]
    assert by[("dpmpp_2m", 41)] < 3 * floor
    assert steps_for_calls("heun", 19) == 10 and steps_for_calls("euler", 19) == 19
