"""PyTorch's side of bench/run_convnet.sh: the keras-io convnet's training step (batch 128, Adam
1e-3) and conv2d forward(+backward) at its two shapes, NHWC-equivalent, on the CPU.
Prints the same rows as bench-conv and bench/run_convnet.sh parse."""
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


print(f"pytorch {torch.__version__}, {threads} threads, mkldnn {torch.backends.mkldnn.is_available()}")
print(f"convnet train step b128: {median_ms(step):.3f} ms")
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
