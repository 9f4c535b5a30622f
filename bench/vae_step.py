# models/vae.wg in PyTorch eager, written with torch.nn.functional: pytorch/examples' VAE on
# Fashion-MNIST, 784-400-(20, 20) encoder, 20-400-784 sigmoid decoder, BCE summed over pixels
# plus KL, both divided by the batch, Adam 1e-3, batch 128, the model file's initialisers
# (glorot-uniform kernels, zero biases: dense's defaults). Prints the median time of one
# training step (forward, backward, Adam, zero grads) over --steps steps after 20 warm-up
# steps, on real Fashion-MNIST batches held in memory, in bench/run_vae.sh's line format.
# Run with OMP_NUM_THREADS set (bench/run.sh and bench/run_vae.sh do).
import argparse
import gzip
import math
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
DATA = os.environ.get("WENGERT_DATA", "/usr/share/datasets/fashion-mnist")
BATCH = 128


def load_images():
    with gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784)
    return torch.from_numpy(images.astype(np.float32) / 255.0)


def glorot(fan_in, fan_out):
    limit = math.sqrt(6 / (fan_in + fan_out))
    return ((torch.rand(fan_out, fan_in) * 2 - 1) * limit).requires_grad_()


def make_params():
    sizes = {"fc1": (784, 400), "fc21": (400, 20), "fc22": (400, 20), "fc3": (20, 400), "fc4": (400, 784)}
    p = {}
    for name, (i, o) in sizes.items():
        p[name + ".w"], p[name + ".b"] = glorot(i, o), torch.zeros(o, requires_grad=True)
    return p


def loss_of(p, x):
    h = F.relu(F.linear(x, p["fc1.w"], p["fc1.b"]))
    mu = F.linear(h, p["fc21.w"], p["fc21.b"])
    logvar = F.linear(h, p["fc22.w"], p["fc22.b"])
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)   # the reparameterization trick
    recon = torch.sigmoid(F.linear(F.relu(F.linear(z, p["fc3.w"], p["fc3.b"])), p["fc4.w"], p["fc4.b"]))
    bce = F.binary_cross_entropy(recon, x, reduction="sum") / x.shape[0]
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
    return bce + kl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(1)
    images = load_images()
    p = make_params()
    opt = torch.optim.Adam(p.values(), lr=1e-3)
    order = torch.randperm(len(images))
    batches = [images[order[i * BATCH:(i + 1) * BATCH]] for i in range(len(images) // BATCH)]
    times = []
    for s in range(20 + args.steps):
        x = batches[s % len(batches)]
        start = time.perf_counter()
        opt.zero_grad()
        loss = loss_of(p, x)
        loss.backward()
        opt.step()
        if s >= 20:
            times.append(time.perf_counter() - start)
    print(f"pytorch {torch.__version__} vae, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"step {statistics.median(times) * 1e3:.3f} ms (median of {args.steps}), last loss {loss.item():.1f}")


if __name__ == "__main__":
    main()
