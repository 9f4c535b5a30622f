# The same chain as bench/op_overhead.cpp in PyTorch eager: z = z + y over 4-element float32
# tensors, then one backward; µs per op (forward + backward), median of 9 chains.
# Run with BLIS_NUM_THREADS and OMP_NUM_THREADS set (bench/run.sh does).
import os
import statistics
import time

import torch

OPS = 20000
REPETITIONS = 9

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
x0 = torch.tensor([1.0, 2.0, 3.0, 4.0])
y0 = torch.tensor([0.5, 0.25, 0.125, 1.0])
grad = torch.ones(4)


def chain():
    x = x0.clone().requires_grad_()
    y = y0.clone().requires_grad_()
    z = x
    for _ in range(OPS):
        z = z + y
    z.backward(grad)


chain()
times = []
for _ in range(REPETITIONS):
    start = time.perf_counter()
    chain()
    times.append(time.perf_counter() - start)
print(f"pytorch {torch.__version__} add+backward, 4 elements, {torch.get_num_threads()} threads: "
      f"{statistics.median(times) / OPS * 1e6:.3f} us/op (median of {REPETITIONS} chains of {OPS} ops)")
