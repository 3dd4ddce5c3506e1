"""diffcore.training under DDP: two gloo processes on CPU, launched as torchrun would (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT), must train like one process that accumulates their
two micro-batches: same samples, same noise, same weights up to float summation order."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from diffcore.io import load_state, load_weights, save_weights
from diffcore.training import TrainConfig, train
from diffcore.training.loop import _seed_micro_batch

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from torch import nn
    from diffcore.io import load_weights
    from diffcore.training import TrainConfig, dist_info, train

    tmp, batch_size = sys.argv[1], int(sys.argv[2])
    model = load_weights(nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 4)), f"{tmp}/init.safetensors")
    data = load_file(f"{tmp}/data.safetensors")["x"]
    def loss(m, b, g):  # noise from the loop's generator, dropout from the global RNG
        noisy = F.dropout(b + 0.3 * torch.randn(b.shape, generator=g), p=0.2)
        return F.mse_loss(m(noisy), 0.5 * b.flip(-1))
    config = TrainConfig(batch_size=batch_size, **json.loads(sys.argv[3]))
    result = train(model, loss, data, config, out_dir=f"{tmp}/ddp", progress=False, device="cpu")
    info = dist_info()
    with open(f"{tmp}/rank{info.rank}.json", "w") as f:
        json.dump({"world": info.world_size, "log": [list(r) for r in result.log]}, f)
    """
)

SETTINGS = {"steps": 7, "lr": 1e-2, "ema_decay": 0.9, "checkpoint_every": 4, "log_every": 3}


def noisy_loss(model, batch, generator):
    """The worker's loss: it draws from the loop's generator and (dropout) the global RNG."""
    noisy = F.dropout(batch + 0.3 * torch.randn(batch.shape, generator=generator), p=0.2)
    return F.mse_loss(model(noisy), 0.5 * batch.flip(-1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 4))


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_accumulating_their_micro_batches(tmp_path):
    # Each rank accumulates 2 micro-batches of 4: the reference accumulates all 4 in order
    # (rank 0's first, rank 1's first, rank 0's second, ...).
    accum = 2
    save_weights(make_model(), tmp_path / "init.safetensors")
    # 44 samples: epochs of 2 global batches of 16 and a dropped tail of 12.
    data = torch.randn(44, 4, generator=torch.Generator().manual_seed(1))
    save_file({"x": data}, tmp_path / "data.safetensors")
    (tmp_path / "worker.py").write_text(WORKER)

    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {
            **os.environ,
            **{"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"},
            **{"RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"},
        }
        cmd = [
            sys.executable,
            str(tmp_path / "worker.py"),
            str(tmp_path),
            "4",
            json.dumps({**SETTINGS, "grad_accum": accum}),
        ]
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out.decode()[-3000:]

    # Reference: one process, the same global batch as 2 x accum micro-batches of 4.
    reference = load_weights(make_model(), tmp_path / "init.safetensors")
    single = train(
        reference,
        noisy_loss,
        data,
        TrainConfig(batch_size=4, grad_accum=2 * accum, **SETTINGS),
        out_dir=tmp_path / "single",
        progress=False,
        device="cpu",
    )

    ddp = load_file(tmp_path / "ddp" / "final" / "model.safetensors")  # EMA weights
    ref = load_file(tmp_path / "single" / "final" / "model.safetensors")
    assert ddp.keys() == ref.keys()
    for k in ref:
        # Averaging the ranks' gradients instead of accumulating them in one process only
        # changes float32 summation order.
        torch.testing.assert_close(ddp[k], ref[k], rtol=0, atol=1e-5, msg=k)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["log"] == ranks[1]["log"]  # losses are averaged over ranks before logging
    for (step, loss, lr), row in zip(ranks[0]["log"], single.log, strict=True):
        assert step == row.step and lr == pytest.approx(row.lr)
        assert loss == pytest.approx(row.loss, rel=1e-5)

    # Rank 0 wrote the checkpoints; they hold no RNG state (the loop reseeds per micro-batch).
    state = load_state(
        tmp_path / "ddp" / "checkpoints" / "step_000007" / "training_state.safetensors"
    )
    assert state["world_size"] == 2 and "rng" not in state


def test_the_noise_of_a_micro_batch_depends_on_its_place_in_the_global_batch_only():
    seeds = {_seed_micro_batch(0, step, index) for step in range(50) for index in range(8)}
    assert len(seeds) == 50 * 8  # no two micro-batches share noise
    assert len({s for pair in seeds for s in pair}) == 2 * 50 * 8  # nor the two streams
    assert _seed_micro_batch(3, 7, 1) == _seed_micro_batch(3, 7, 1)  # a pure function
    assert all(0 <= s < 2**63 for pair in seeds for s in pair)
