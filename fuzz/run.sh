#!/usr/bin/env bash
# One bounded libFuzzer run: run.sh FUZZER CORPUS RUNS SEED_DIR...
# RUNS inputs, or 60 seconds if that comes first (the check target under the sanitizers runs
# a few hundred inputs a second), so the fuzz suite stays within a few minutes on two cores.
# New inputs go to CORPUS (made here, in the build folder); the seed folders are only read.
# A crash leaves its input as crash-* in the current folder and fails the run.
set -euo pipefail
fuzzer=$1 corpus=$2 runs=$3
shift 3
mkdir -p "$corpus"
# -rss_limit_mb: an input may make tensors up to the language's limit (2^28 elements)
exec "$fuzzer" -runs="$runs" -max_total_time=60 -rss_limit_mb=4096 -print_final_stats=1 "$corpus" "$@"
