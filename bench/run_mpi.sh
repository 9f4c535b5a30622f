#!/bin/sh
# Data-parallel training (Note [Data-parallel training] in dsl/src/trainer.cpp): examples per
# second of `wengert train MODEL --steps STEPS` for models/mlp_actreg.wg, models/vae.wg and
# models/sort_attention.wg as one process with one thread, and as two processes with one thread
# each under mpirun, over shared memory (Open MPI's default, vader) and over TCP loopback
# (--mca btl tcp,self), with the speed-up over one process, the bytes of gradients summed per
# step and the time each step spent on the sums (the run's own report). One process at half
# the batch shows what each of two processes does alone: twice its rate is the ceiling of the
# speed-up, which a small model's fixed costs per step (the optimizer updates every parameter
# on every process) keep below 2. The rate is the epoch
# line's: the train loop's examples over its seconds (batches gathered, forward, backward, the
# sums, the update), data loading and evaluation left out. Figures only: nothing passes or fails.
# Usage: bench/run_mpi.sh [BUILD_DIR] (default: build), after `ninja -C BUILD_DIR dsl/wengert`
# in a build with MPI (libopenmpi-dev installed). STEPS (default 300) sets the steps per run,
# REPEAT (default 3) how many runs of each setting, of which the fastest counts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
steps=${STEPS:-300}
. "$here/kernels.sh"
cli_bench_setup run_mpi.sh "${1:-build}"
if ! "$build/dsl/wengert" --version | grep -q "data-parallel training: Open MPI"; then
    echo "run_mpi.sh: $build/dsl/wengert was built without MPI (install libopenmpi-dev and rebuild)" >&2
    exit 64
fi
if ! command -v mpirun >/dev/null; then
    echo "run_mpi.sh: mpirun not found (Debian's openmpi-bin)" >&2
    exit 64
fi
"$build/dsl/wengert" --version | sed -n 's/^gemm kernels: /wengert gemm kernels: /p'
lscpu | sed -n 's/^Model name: *\(.*\)/CPU: \1/p'
mpirun --version | head -1
export WENGERT_NUM_THREADS=1

# run NAME PROCESSES MPIRUN_OPTIONS MODEL: prints "rate|bytes|wait" of the fastest of REPEAT
# runs (default 3: this machine's speed drifts between runs)
run() {
    best=""
    i=0
    while [ "$i" -lt "${REPEAT:-3}" ]; do
        one_run "$@"
        if [ -z "$best" ] || awk -v a="${result%%|*}" -v b="${best%%|*}" 'BEGIN { exit !(a > b) }'; then best=$result; fi
        i=$((i + 1))
    done
    echo "$best"
}

one_run() {
    if [ "$2" = 1 ] && [ "$3" = half ]; then
        # what one of two processes does, alone: the ceiling of the speed-up is twice this rate
        half=$(( $(sed -n 's/^ *batch *= *\([0-9]*\).*/\1/p' "$root/$4" | head -1) / 2 ))
        out=$(cd "$root" && "$build/dsl/wengert" train "$4" --steps "$steps" --batch "$half" --no-progress 2>/dev/null)
    elif [ "$2" = 1 ]; then
        out=$(cd "$root" && "$build/dsl/wengert" train "$4" --steps "$steps" --no-progress 2>/dev/null)
    else
        # shellcheck disable=SC2086
        out=$(cd "$root" && mpirun --allow-run-as-root --oversubscribe -np "$2" $3 "$build/dsl/wengert" train "$4" \
              --steps "$steps" --no-progress 2>/dev/null)
    fi
    rate=$(echo "$out" | grep '^epoch' | tail -1 | sed -n 's/.*s, \([0-9.]*\) ex\/s).*/\1/p')
    bytes=$(echo "$out" | sed -n 's/.*: \(.*\) of gradients summed per step.*/\1/p')
    wait=$(echo "$out" | sed -n 's/.*, \([0-9.]*\) ms per step waiting.*/\1/p')
    result="$rate|${bytes:--}|${wait:--}"
}

printf '%-16s %-26s %12s %9s %12s %14s\n' model setting "examples/s" speed-up "summed/step" "wait/step ms"
for model in mlp_actreg vae sort_attention; do
    one=""
    for setting in "1 process x 1 thread|1|" "1 x 1 at half the batch|1|half" "2 x 1, shared memory|2|" \
                   "2 x 1, TCP loopback|2|--mca btl tcp,self"; do
        label=${setting%%|*}
        rest=${setting#*|}
        np=${rest%%|*}
        opts=${rest#*|}
        result=$(run "$model" "$np" "$opts" "models/$model.wg")
        rate=${result%%|*}
        rest=${result#*|}
        bytes=${rest%%|*}
        wait=${rest#*|}
        [ -n "$one" ] || one=$rate
        if [ "$opts" = half ]; then
            awk -v m="$model" -v l="$label" -v r="$rate" -v o="$one" \
                'BEGIN { printf "%-16s %-26s %12.0f %8.2fx %12s %14s   (ceiling for 2 processes: %.2fx)\n", m, l, r, r / o, "-", "-", 2 * r / o }'
        else
            awk -v m="$model" -v l="$label" -v r="$rate" -v o="$one" -v b="$bytes" -v w="$wait" \
                'BEGIN { printf "%-16s %-26s %12.0f %8.2fx %12s %14s\n", m, l, r, r / o, b, w }'
        fi
    done
done
