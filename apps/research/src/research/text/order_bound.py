"""How loose is the diffusion model's ELBO? Importance-weighted bounds over unmasking orders.

A masked-diffusion model sampled one token per step in random order is a mixture of
autoregressive models over the n! orders: p(x) = E_sigma[p_sigma(x)], with
p_sigma(x) = prod_i p(x_sigma(i) | x_sigma(<i)). The count-form ELBO that the benchmark reports
is E_sigma[log p_sigma(x)] (Jensen's inequality below log p(x)). Drawing K orders per block and
averaging p_sigma(x) inside the log (Burda et al. 2016, https://arxiv.org/abs/1509.00519) gives
bounds that tighten towards log p(x) as K grows; each order costs n forward passes.

``--proposal BETA`` draws each next position with probability proportional to
p(true token)^BETA instead of uniformly, and weights the draw accordingly (sequential importance
sampling, still an unbiased estimate of p(x)); 0: uniform orders.

    uv run python -m research.text.order_bound --model outputs/text_mini/diffusion \\
        --blocks 4 --orders 8
"""

from __future__ import annotations

import math
import time

import torch

from diffcore.processes.mask import clean_log_probs
from difftext import load_documents, load_text_model, make_blocks, split_tail
from difftext.evaluate import diffusion_nll_bound
from research._utils import SHARED_DATA, study_parser

DATA = SHARED_DATA / "tinyshakespeare" / "input.txt"


@torch.no_grad()
def order_log_weights(denoiser, mask_id: int, x: torch.Tensor, beta: float, gen) -> torch.Tensor:
    """log of the importance weight p_sigma(x) (1/n!) / q(sigma) of one drawn order per row (B,):
    n forward passes, revealing the true token at one position per pass."""
    rows, n = x.shape
    revealed = torch.zeros(rows, n, dtype=torch.bool)
    log_w = torch.zeros(rows, dtype=torch.float64)
    r = torch.arange(rows)
    for i in range(n):
        logits = denoiser(torch.where(revealed, x, mask_id))
        lp = clean_log_probs(logits, mask_id).gather(-1, x[..., None]).squeeze(-1)
        lp = lp.masked_fill(revealed, -math.inf)
        score = torch.where(revealed, -math.inf, beta * lp if beta else torch.zeros_like(lp))
        log_q = torch.log_softmax(score, -1)
        j = torch.multinomial(log_q.exp(), 1, generator=gen).squeeze(1)
        log_w += (lp[r, j] - math.log(n - i) - log_q[r, j]).double()
        revealed[r, j] = True
    return log_w


def main() -> None:
    parser = study_parser(__spec__.name, __doc__)
    parser.add_argument("--model", required=True, help="a trained diffusion model directory")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=4, help="validation blocks (the first)")
    parser.add_argument("--orders", type=int, default=8, help="orders K per block")
    parser.add_argument("--proposal", type=float, default=0.0, help="BETA (0: uniform orders)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = load_text_model(args.model)
    _, val_docs = split_tail(load_documents([args.data]), 0.1)
    blocks = make_blocks(model.tokenizer, val_docs, args.block_size).subset(slice(0, args.blocks))
    if not bool(blocks.counted.all()):
        raise SystemExit("choose fewer blocks: the last one is padded (the bounds here need none)")
    chars, tokens = int(blocks.characters.sum()), blocks.tokens.numel()
    elbo = diffusion_nll_bound(model, blocks, samples=16, seed=args.seed)
    print(f"ELBO (count form, 16 mask draws): {elbo.bits_per_char:.4f} bits/char")
    t0 = time.perf_counter()
    x = blocks.tokens.repeat_interleave(args.orders, 0)
    gen = torch.Generator().manual_seed(args.seed)
    log_w = order_log_weights(model.denoiser(), model.mask_id, x, args.proposal, gen)
    log_w = log_w.view(args.blocks, args.orders)
    print(
        f"{args.orders} orders x {args.blocks} blocks, proposal beta {args.proposal:g}: "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(f"within-block std of log p_sigma(x): {log_w.std(1).mean():.2f} nats")
    # K = 1 has the ELBO's expectation; against it (the same orders) the gain of K is free of
    # the two estimates' separate Monte-Carlo noise
    print("| K | bound bits/char | vs K = 1 | vs ELBO |")
    print("|---:|---:|---:|---:|")
    single = None
    for k in sorted({k for k in (1, 2, 4, args.orders) if k <= args.orders}):
        # every disjoint group of k orders gives a K = k bound; average them
        groups = log_w[:, : args.orders // k * k].reshape(args.blocks, -1, k)
        bound = -(torch.logsumexp(groups, -1) - math.log(k)).mean(1).sum() / chars / math.log(2)
        single = single or float(bound)
        print(
            f"| {k} | {bound:.4f} | {bound / single - 1:+.2%} | "
            f"{bound / elbo.bits_per_char - 1:+.2%} |"
        )
    print(f"({tokens} tokens, {chars} characters)")


if __name__ == "__main__":
    main()
