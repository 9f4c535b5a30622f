# The same AttentionQKV forward + backward as bench/attention.cpp in PyTorch eager, written with
# torch.nn.functional: B = 32, T = 128, d = 256, 8 heads, f32, dropout 0 and 0.1, median of 9.
# With --peak: the peak resident set (VmHWM) one attention forward + backward adds at
# B x h = 32, T = 1024, d_head = 64, dropout 0.1 (run it in its own process: the high-water
# mark never goes down).
# Run with BLIS_NUM_THREADS and OMP_NUM_THREADS set (bench/run.sh does).
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPETITIONS = 9

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def attention(q, k, v, n_heads, p):
    batch, length, d = q.shape
    d_head = d // n_heads

    def split_heads(x):
        return x.view(batch, x.shape[1], n_heads, d_head).transpose(1, 2)

    logits = split_heads(q) @ split_heads(k).transpose(-2, -1) / math.sqrt(d_head)
    weights = F.dropout(torch.softmax(logits, dim=-1), p, training=True)
    return (weights @ split_heads(v)).transpose(1, 2).reshape(batch, length, d)


def time_attention_qkv():
    batch, length, d, n_heads = 32, 128, 256, 8
    torch.manual_seed(0)
    x = torch.rand(batch, length, d) * 2 - 1
    grad = torch.rand(batch, length, d) * 2 - 1
    limit = 1 / math.sqrt(d)
    weights = [((torch.rand(d, d) * 2 - 1) * limit).requires_grad_() for _ in range(4)]
    biases = [((torch.rand(d) * 2 - 1) * limit).requires_grad_() for _ in range(4)]
    print(f"pytorch {torch.__version__} AttentionQKV forward + backward, same sizes, "
          f"{torch.get_num_threads()} threads, median of {REPETITIONS}:")
    for p in (0.0, 0.1):
        def step():
            q, k, v = (F.linear(x, weights[i], biases[i]) for i in range(3))
            y = F.linear(attention(q, k, v, n_heads, p), weights[3], biases[3])
            y.backward(grad)

        step()
        times = []
        for _ in range(REPETITIONS):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(f"pytorch dropout {p:g}: {statistics.median(times) * 1e3:.3f} ms")


def peak_rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak():
    batch, n_heads, length, d_head = 4, 8, 1024, 64
    d = n_heads * d_head
    q, k, v = (torch.rand(batch, length, d).requires_grad_() for _ in range(3))
    grad = torch.rand(batch, length, d)
    before = peak_rss_mb()
    start = time.perf_counter()
    attention(q, k, v, n_heads, 0.1).backward(grad)
    elapsed = time.perf_counter() - start
    after = peak_rss_mb()
    print(f"pytorch peak: {after - before:.0f} MB above the inputs ({elapsed * 1e3:.0f} ms forward + backward)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--peak"]:
        peak()
    else:
        time_attention_qkv()
