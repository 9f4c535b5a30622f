"""PyTorch's side of bench/run_convnet.sh: the keras-io convnet's training step (batch 128, Adam
1e-3, the median of 9 after a warm-up), one epoch (469 steps over 60,000 images held in memory,
shuffled), and conv2d forward(+backward) at its two shapes. Prints which convolution kernels
oneDNN ran (DNNL_VERBOSE) and the lines bench/run_convnet.sh parses. Usage: conv_step.py [THREADS]"""
import os
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(1)
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
reps = 9


def median_ms(f):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.rand(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))


def step():
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()


if os.environ.get("DNNL_VERBOSE") == "1":   # the child below: one step, for its kernels' names
    step()
    sys.exit(0)
verbose = subprocess.run([sys.executable, __file__, str(threads)], env=dict(os.environ, DNNL_VERBOSE="1"),
                         capture_output=True, text=True).stdout
# "onednn_verbose,exec,cpu,convolution,jit:avx2,forward_training,...": the implementation and the pass
impls = sorted({"{} ({})".format(*line.split(",")[4:6]) for line in verbose.splitlines()
                if line.split(",")[1:4] == ["exec", "cpu", "convolution"]})
print(f"pytorch {torch.__version__}, {threads} threads; convolutions on oneDNN: {', '.join(impls) or 'not oneDNN'}")
print(f"convnet train step b128: {median_ms(step):.3f} ms")
images = torch.rand(60000, 1, 28, 28)
labels = torch.randint(0, 10, (60000,))


def epoch():
    order = torch.randperm(60000)
    for start in range(0, 60000, 128):
        batch = order[start:start + 128]
        opt.zero_grad()
        F.cross_entropy(model(images[batch]), labels[batch]).backward()
        opt.step()


t = time.perf_counter()
epoch()
print(f"convnet epoch: {time.perf_counter() - t:.3f} s")
for name, shape, conv, needs_dx in [("conv 1", (128, 1, 28, 28), nn.Conv2d(1, 32, 3), False),
                                     ("conv 2", (128, 32, 13, 13), nn.Conv2d(32, 64, 3), True)]:
    inp = torch.rand(*shape, requires_grad=needs_dx)
    with torch.no_grad():
        fwd = median_ms(lambda: F.relu(conv(inp)))

    def both():
        out = F.relu(conv(inp))
        out.backward(torch.ones_like(out))

    print(f"{name} forward: {fwd:.3f} ms")
    print(f"{name} forward+backward: {median_ms(both):.3f} ms")
