#!/usr/bin/env bash
# Makes the pictures of docs/vae.md and docs/attention.md, docs/pictures/*.png: trains the VAE
# (10 epochs) and both sorters of models/sort_attention.wg (3,000 steps each), then draws with
# `wengert sample`, `predict`, `show` and `plot`. About three minutes on two cores.
#
#   docs/pictures/make.sh            # with build/dsl/wengert; WENGERT=... for another binary
set -euo pipefail
cd "$(dirname "$0")/../.."
wengert=${WENGERT:-build/dsl/wengert}
python=${PYTHON:-/usr/bin/python3}   # Debian's, with python3-numpy
runs=${RUNS:-build/runs/pictures}
out=docs/pictures
mkdir -p "$runs" "$out"

# ---- the VAE (docs/vae.md) ------------------------------------------------------------------
"$wengert" train models/vae.wg --checkpoint "$runs/vae" --overwrite --no-progress
"$wengert" sample models/vae.wg --checkpoint "$runs/vae" --n 64 --seed 1 --out "$out/vae_samples.png"
"$wengert" sample models/vae.wg --checkpoint "$runs/vae" --reconstruct 20 --out "$out/vae_reconstructions.png"
"$wengert" sample models/vae.wg --checkpoint "$runs/vae" --walk --out "$out/vae_walk.png"
"$wengert" plot "$runs/vae/metrics.jsonl" --out "$out/vae_curves.png"

# ---- attention maps per head (docs/attention.md) ---------------------------------------------
# one sequence of 12 digits, padded to 16 with token 10
"$python" -c "
import numpy as np
tokens = np.array([[7, 3, 9, 1, 4, 4, 0, 8, 2, 6, 5, 3, 10, 10, 10, 10]], dtype=np.int64)
np.savez('$runs/sequence.npz', tokens=tokens)
"
for function in sorter sorter_penalised; do
  "$wengert" train models/sort_attention.wg --function "$function" --checkpoint "$runs/$function" --overwrite --no-progress
  "$wengert" predict models/sort_attention.wg --checkpoint "$runs/$function" --inputs "$runs/sequence.npz" \
      --out "$runs/${function}_logits.npz" \
      --dump "h1.attention.weights=$runs/${function}_block1.npy" --dump "h2.attention.weights=$runs/${function}_block2.npy"
  for block in block1 block2; do
    "$wengert" show "$runs/${function}_${block}.npy" --out "$out/${function}_${block}.png" --scale 10
  done
done
"$wengert" plot "$runs/sorter/metrics.jsonl" --out "$out/sorter_curves.png"

# the share of each head's attention (the 12 real tokens) on keys within two positions of
# the query, beside what uniform attention would give (docs/attention.md)
"$python" - "$runs" > "$out/attention_locality.txt" <<'PY'
import sys
import numpy as np
runs = sys.argv[1]
i, j = np.indices((12, 12))
near = np.abs(i - j) <= 2
print("weight on keys within |i - j| <= 2 (uniform attention: %.3f)" % near.mean())
print("model             block  head 0  head 1  head 2  head 3  all")
for function in ("sorter", "sorter_penalised"):
    for block in ("block1", "block2"):
        w = np.load(f"{runs}/{function}_{block}.npy")[0][:, :12, :12]
        heads = "  ".join(f"{w[h][near].sum() / w[h].sum():.3f} " for h in range(w.shape[0]))
        print(f"{function:17s} {block[-1]:5s}  {heads} {w[:, near].sum() / w.sum():.3f}")
PY
cat "$out/attention_locality.txt"
