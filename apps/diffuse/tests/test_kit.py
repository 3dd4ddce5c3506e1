"""The command kit's run record and wall-clock budget."""

import argparse
import json
import time

import pytest

from diffuse.kit import Budget, process_start, write_run


def test_the_run_record_holds_arguments_configs_versions_revision_and_machine(tmp_path):
    args = argparse.Namespace(steps=3, seed=7, run=print, debug=True, argv=["train", "x"])
    path = write_run(tmp_path / "run", args, train_config={"steps": 3})
    record = json.loads(path.read_text())
    assert path == tmp_path / "run" / "run.json" and record["command"] == "diffuse train x"
    assert record["arguments"] == {"steps": 3, "seed": 7} and record["seed"] == 7
    assert record["train_config"] == {"steps": 3}
    assert {"diffcore", "diffuse", "torch"} <= set(record["versions"])
    assert {"commit", "dirty"} == set(record["git"])
    assert {"platform", "cpu", "cpu_count"} <= set(record["machine"])
    beside = write_run(tmp_path / "samples.jsonl", args, beside=True)
    assert beside == tmp_path / "samples.run.json"


def test_a_budget_counts_from_the_process_start_and_plans_steps_before_the_work_after():
    assert time.time() - 3600 < process_start() <= time.time()
    import diffcore.training  # noqa: F401  (imported by plan: not part of the 40 s)

    budget = Budget(1.0, start=time.time() - 20)  # 40 s left
    steps, stop_at = budget.plan(0.5, after=10.0)
    assert steps == pytest.approx(0.95 * 30 / 0.5, abs=2)
    assert stop_at == pytest.approx(budget.deadline - 10.5)
    assert budget.fit(8, 10.0, after=2.0) == 3  # rows of a preview that still fit
    assert not Budget(None) and Budget(None).fit(8, 10.0) == 8


def test_training_options_resolve_to_a_train_config_with_the_ema_choices():
    from diffuse.kit import ArgumentParser, train_config, training_options

    parser = ArgumentParser(prog="t")
    training_options(parser, steps=400, batch_size=8, lr=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    plain = train_config(parser.parse_args([]))
    assert plain.ema_decay == pytest.approx(1 - 1 / 40) and not plain.ema_warmup
    warm = train_config(parser.parse_args(["--ema", "0.999", "--ema-warmup"]))
    assert warm.ema_decay == 0.999 and warm.ema_warmup
    assert train_config(parser.parse_args(["--ema", "0"])).ema_decay is None


def test_every_command_module_stays_small():
    """A domain's command module holds only what is domain-specific (issue #34: <= 200 lines);
    logic that grows belongs in the domain package or the kit."""
    from pathlib import Path

    import diffuse.commands

    folder = Path(diffuse.commands.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 200} == {}
