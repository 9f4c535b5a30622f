# models/mlp_actreg.wg in PyTorch eager, for bench/run_mlp.sh: Fashion-MNIST 784-256-256-10
# ReLU, cross-entropy plus 1e-4 * sum(h2^2) / batch on the second hidden layer, Adam lr 1e-3,
# batch 128, data in memory, PyTorch's default Linear init. Prints the median time of one
# training step, of one training epoch (the train loop only: shuffled batches, forward,
# backward, step; the last partial batch included) and of one evaluation pass over the 10k
# test images (no grad: loss and accuracy), in the same line format as bench/mlp_step.cpp.
# Run with BLIS_NUM_THREADS and OMP_NUM_THREADS set before Python starts (bench/run_mlp.sh does).
import argparse
import gzip
import os
import statistics
import time

import numpy as np
import torch

DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 128
PENALTY = 1e-4


def load_idx(path):
    """An IDX file (gzipped) as a NumPy array: magic 0 0 type ndim, big-endian int32 extents."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    images = load_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 256)
        self.fc2 = torch.nn.Linear(256, 256)
        self.fc3 = torch.nn.Linear(256, 10)

    def forward(self, x):
        h1 = torch.relu(self.fc1(x))
        h2 = torch.relu(self.fc2(h1))
        return self.fc3(h2), h2


def objective(model, x, y):
    logits, h2 = model(x)
    return torch.nn.functional.cross_entropy(logits, y) + PENALTY * h2.pow(2).sum() / x.shape[0], logits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3, help="training epochs timed (median reported)")
    parser.add_argument("--steps", type=int, default=200, help="single steps timed (median reported)")
    args = parser.parse_args()

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(1)
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    n = len(x_train)

    def train_step(rows):
        x, y = x_train[rows], y_train[rows]
        loss, _ = objective(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    # one training step: the same batch of rows each time, after a warm-up
    rows = torch.randperm(n)[:BATCH]
    for _ in range(20):
        train_step(rows)
    step_times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        train_step(rows)
        step_times.append(time.perf_counter() - start)

    epoch_times, losses = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        total = 0.0
        for first in range(0, n, BATCH):
            total += train_step(order[first : first + BATCH]).item() * min(BATCH, n - first)
        epoch_times.append(time.perf_counter() - start)
        losses.append(total / n)

    # three eval passes an epoch, as bench-mlp-step: the pass is short and noise moves it most
    eval_passes = 3 * args.epochs
    eval_times = []
    for _ in range(eval_passes):
        start = time.perf_counter()
        correct, total = 0, 0.0
        with torch.no_grad():
            for first in range(0, len(x_test), BATCH):
                x, y = x_test[first : first + BATCH], y_test[first : first + BATCH]
                loss, logits = objective(model, x, y)
                total += loss.item() * len(x)
                correct += (logits.argmax(1) == y).sum().item()
        eval_times.append(time.perf_counter() - start)

    threads = torch.get_num_threads()
    print(f"pytorch {torch.__version__}, {threads} threads: "
          f"step {statistics.median(step_times) * 1e3:.3f} ms (median of {args.steps})")
    print(f"pytorch {torch.__version__}, {threads} threads: "
          f"epoch {statistics.median(epoch_times):.3f} s (median of {args.epochs}; train loss {losses[-1]:.4f})")
    print(f"pytorch {torch.__version__}, {threads} threads: "
          f"eval {statistics.median(eval_times):.3f} s (median of {eval_passes}; test accuracy {correct / len(x_test):.4f})")


if __name__ == "__main__":
    main()
