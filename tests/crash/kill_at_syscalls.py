#!/usr/bin/env python3
"""kill -9 at exact system calls of a training run's checkpoint and log writes, then --resume.

usage: kill_at_syscalls.py WENGERT WORKDIR

An uninterrupted run is traced once (strace -f -y) to list every openat, write, fsync,
fdatasync, rename and unlink of the main thread that touches the checkpoint folder (its
parameter, optimizer and manifest files and the metrics log). For each of those calls, a fresh
run is killed with SIGKILL exactly there (strace -e inject=SYSCALL:signal=KILL:when=N, which
counts per system call and per thread), then continued with --resume (or started again when the
kill came before the first manifest), and must end with the uninterrupted run's parameters bit
for bit, its metrics log record for record (the epochs' wall-clock "seconds" aside), and no
temporary file left in the folder. Exits 1 naming every call after which that did not hold.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import random

SYSCALLS = ["openat", "write", "fsync", "fdatasync", "rename", "renameat", "renameat2", "unlink", "unlinkat"]
MODEL = """def net(x: f32[B, 4], y: i64[B]) {{
    h      = dropout(dense(5, activation = tanh)(x), 0.2)
    logits = dense(3)(h)
    loss ce    = cross_entropy(logits, y)
    metric acc = accuracy(logits, y)
    return logits
}}
train net {{
    data      = csv_data(path = "{data}", label = -1, header = false)
    eval_data = csv_data(path = "{data}", label = -1, header = false)
    optimizer = adam(lr = 0.01)
    batch     = 6
    epochs    = 3
    seed      = 3
}}
"""


def train(wengert, model, folder, *extra, strace=None):
    args = [wengert, "train", model, "--checkpoint", folder, "--no-progress", "--threads", "1", *extra]
    if strace:
        args = ["strace", "-f", "-qq", *strace, "--", *args]
    return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def final_state(folder):
    """The parameters the manifest names, the log without timings, and the folder's file names."""
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(folder, manifest["params_file"]), "rb") as f:
        params = f.read()   # the .npz is written byte for byte the same for the same values
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        log = [re.sub(r'"seconds":[^,]*,', "", line) for line in f]
    return params, log, sorted(os.listdir(folder))


def calls_touching(trace_path, folder):
    """(syscall, n) for each call of the main thread on a file in `folder`: its n-th of that syscall."""
    counts, calls, main = {}, [], None
    pattern = re.compile(r"^(\d+) +(?:<\.\.\. )?(\w+)[( ]")
    with open(trace_path) as f:
        for line in f:
            m = pattern.match(line)
            if not m or m.group(2) not in SYSCALLS or "resumed>" in line:
                continue
            pid = m.group(1)
            main = main or pid
            if pid != main:
                continue
            name = m.group(2)
            counts[name] = counts.get(name, 0) + 1
            if folder + "/" in line:
                calls.append((name, counts[name]))
    return calls


def check_resumed(wengert, model, folder, killed, what, want):
    """What went wrong after `killed`, continued in `folder`, if anything."""
    want_params, want_log, want_files = want
    if killed.returncode not in (-9, 137):
        return f"{what}: the run was not killed there (exit {killed.returncode}): its calls differ from the trace"
    has_manifest = os.path.exists(os.path.join(folder, "manifest.json"))
    resumed = train(wengert, model, folder, *(["--resume"] if has_manifest else []))
    if resumed.returncode != 0:
        return f"{what}: {'--resume' if has_manifest else 'the new run'} exited {resumed.returncode}: {resumed.stderr.strip()}"
    params, log, files = final_state(folder)
    wrong = []
    if params != want_params:
        wrong.append("the final parameters differ from the uninterrupted run's")
    if log != want_log:
        wrong.append("the metrics log differs from the uninterrupted run's")
    if any(".tmp-" in f for f in files) or len(files) != len(want_files):
        wrong.append(f"the folder holds {files}, the uninterrupted run's {want_files}")
    return f"{what}: {'; '.join(wrong)}" if wrong else None


def main():
    wengert, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.join(work, "data.csv")
    rng = random.Random(5)
    with open(data, "w") as f:
        for _ in range(20):
            f.write(",".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(4)) + f",{rng.randrange(3)}\n")
    model = os.path.join(work, "net.wg")
    with open(model, "w") as f:
        f.write(MODEL.format(data=data))

    whole = os.path.join(work, "whole")
    trace = os.path.join(work, "trace.txt")
    r = train(wengert, model, whole, strace=["-y", "-e", "trace=" + ",".join(SYSCALLS), "-o", trace])
    if r.returncode != 0:
        sys.exit(f"the traced uninterrupted run failed ({r.returncode}): {r.stderr}")
    want_params, want_log, want_files = final_state(whole)
    calls = calls_touching(trace, whole)
    if not calls:
        sys.exit("the trace shows no system call on the checkpoint folder: nothing was tested")

    failures = []
    for name, n in calls:
        folder = os.path.join(work, f"{name}-{n}")
        # the call must be traced for strace to stop at it: the trace goes nowhere
        killed = train(wengert, model, folder, strace=["-o", os.devnull, "-e", f"inject={name}:signal=KILL:when={n}"])
        failure = check_resumed(wengert, model, folder, killed, f"kill -9 at {name} #{n}", (want_params, want_log, want_files))
        if failure:
            failures.append(failure)
        shutil.rmtree(folder, ignore_errors=True)
    for f in failures:
        print(f)
    print(f"{len(calls) - len(failures)} of {len(calls)} kill points resumed identically")
    sys.exit(1 if failures else 0)

if __name__ == "__main__":
    main()
