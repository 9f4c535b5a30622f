# models/sort_attention.wg's `sorter` in PyTorch eager, written with torch.nn.functional: token
# plus learned positional embedding, two post-norm encoder blocks (AttentionQKV with 4 heads
# and attention dropout 0.1, residual, layer norm, ReLU feed-forward of width 256, residual,
# layer norm), d = 64, a dense to 10 classes, cross-entropy over the non-pad positions, Adam
# 1e-3, batch 64, sequences of 8 to 16 digits padded to 16 with token 10. The same
# initialisers as the model file (glorot-uniform kernels, zero biases, N(0, 1) embeddings).
#
#   python3 sort_step.py [--steps N]     median ms per training step (forward, backward,
#                                        Adam, zero grads) over N steps after 20 warm-up steps
#   python3 sort_step.py --train N       trains N steps and prints per-token and exact-match
#                                        accuracy on 2,000 held-out sequences every 300 steps
#   --penalty                            adds -0.1 * max(0, |i - j| - 2) to the logits
#
# Run with OMP_NUM_THREADS set (bench/run.sh and bench/run_sort.sh do).
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

D, D_FF, HEADS, LENGTH, PAD, VOCAB, CLASSES = 64, 256, 4, 16, 10, 11, 10


def sort_digits(n, generator):
    lengths = torch.randint(8, LENGTH + 1, (n,), generator=generator)
    digits = torch.randint(0, 10, (n, LENGTH), generator=generator)
    real = torch.arange(LENGTH)[None, :] < lengths[:, None]
    tokens = torch.where(real, digits, torch.full_like(digits, PAD))
    # sorting with the pad (10) last puts the real digits first, in order
    targets = torch.where(real, tokens.sort(dim=1).values, torch.zeros_like(digits))
    return tokens, targets


def glorot(fan_in, fan_out):
    limit = math.sqrt(6 / (fan_in + fan_out))
    return ((torch.rand(fan_out, fan_in) * 2 - 1) * limit).requires_grad_()


def zeros(n):
    return torch.zeros(n, requires_grad=True)


def make_params():
    p = {"embedding": torch.randn(VOCAB, D).requires_grad_(),
         "positions": torch.randn(LENGTH, D).requires_grad_()}
    for b in range(2):
        for name in ("q", "k", "v", "o"):
            p[f"{b}.w{name}"], p[f"{b}.b{name}"] = glorot(D, D), zeros(D)
        p[f"{b}.w1"], p[f"{b}.b1"] = glorot(D, D_FF), zeros(D_FF)
        p[f"{b}.w2"], p[f"{b}.b2"] = glorot(D_FF, D), zeros(D)
        for n in ("1", "2"):
            p[f"{b}.ln{n}.g"] = torch.ones(D, requires_grad=True)
            p[f"{b}.ln{n}.b"] = zeros(D)
    p["out.w"], p["out.b"] = glorot(D, CLASSES), zeros(CLASSES)
    return p


def distance_penalty(scale, width):
    i = torch.arange(LENGTH)
    return -scale * ((i[:, None] - i[None, :]).abs() - width).clamp(min=0).float()


def encoder(x, key_mask, p, b, training, penalty):
    batch = x.shape[0]
    d_head = D // HEADS

    def heads(t):
        return t.view(batch, LENGTH, HEADS, d_head).transpose(1, 2)

    q, k, v = (heads(F.linear(x, p[f"{b}.w{n}"], p[f"{b}.b{n}"])) for n in "qkv")
    logits = q @ k.transpose(-2, -1) / math.sqrt(d_head)
    if penalty is not None:
        logits = logits + penalty
    logits = logits.masked_fill(~key_mask, -1e9)
    weights = F.dropout(torch.softmax(logits, dim=-1), 0.1, training=training)
    y = (weights @ v).transpose(1, 2).reshape(batch, LENGTH, D)
    x = F.layer_norm(x + F.linear(y, p[f"{b}.wo"], p[f"{b}.bo"]), (D,), p[f"{b}.ln1.g"], p[f"{b}.ln1.b"], 1e-6)
    f = F.linear(F.relu(F.linear(x, p[f"{b}.w1"], p[f"{b}.b1"])), p[f"{b}.w2"], p[f"{b}.b2"])
    return F.layer_norm(x + f, (D,), p[f"{b}.ln2.g"], p[f"{b}.ln2.b"], 1e-6)


def forward(p, tokens, training, penalty):
    key_mask = (tokens != PAD)[:, None, None, :]
    x = F.embedding(tokens, p["embedding"]) + p["positions"]
    for b in range(2):
        x = encoder(x, key_mask, p, b, training, penalty)
    return F.linear(x, p["out.w"], p["out.b"])


def loss_fn(logits, tokens, targets):
    real = (tokens != PAD).float()
    ce = F.cross_entropy(logits.reshape(-1, CLASSES), targets.reshape(-1), reduction="none")
    return (ce * real.reshape(-1)).sum() / real.sum()


def evaluate(p, tokens, targets, penalty):
    with torch.no_grad():
        hits = forward(p, tokens, False, penalty).argmax(-1) == targets
        real = tokens != PAD
        token_acc = (hits & real).sum().item() / real.sum().item()
        exact = (hits | ~real).all(dim=1).float().mean().item()
    return token_acc, exact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--train", type=int, default=0)
    parser.add_argument("--penalty", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    p = make_params()
    optimizer = torch.optim.Adam(p.values(), lr=1e-3)
    penalty = distance_penalty(0.1, 2) if args.penalty else None

    def step(tokens, targets):
        loss = loss_fn(forward(p, tokens, True, penalty), tokens, targets)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        return loss

    if args.train:
        eval_tokens, eval_targets = sort_digits(2000, torch.Generator().manual_seed(args.seed + 1000))
        start = time.perf_counter()
        for s in range(1, args.train + 1):
            loss = step(*sort_digits(64, generator))
            if s % 300 == 0 or s == args.train:
                token_acc, exact = evaluate(p, eval_tokens, eval_targets, penalty)
                print(f"step {s}: loss {loss.item():.4f}  token_acc {token_acc:.4f}  exact_match {exact:.4f}"
                      f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        return

    batches = [sort_digits(64, generator) for _ in range(20 + args.steps)]
    for tokens, targets in batches[:20]:
        step(tokens, targets)
    times = []
    for tokens, targets in batches[20:]:
        start = time.perf_counter()
        step(tokens, targets)
        times.append(time.perf_counter() - start)
    print(f"pytorch {torch.__version__} sort model, batch 64, {torch.get_num_threads()} threads, "
          f"median of {args.steps}: step {statistics.median(times) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
