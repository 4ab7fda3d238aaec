#!/usr/bin/env bash
# One training epoch, Kiln against PyTorch (Debian's 1.13.1), same network, optimizer, batch size and thread
# count, measured in one run; prints both medians and the ratio. Two workloads: Fashion-MNIST (the sample's
# network, batch 64 and 256, 1 and 2 threads), and small-batch training (a 64-128-64-10 MLP with LayerNorm, Tanh
# and Dropout, batch 32, AdamW, one thread, on a synthetic data set: bench/train_small_batch.cpp). PyTorch runs at its best here, configured as
# in bench/run.sh (see bench/README.md): OpenBLAS's OpenMP build (Debian's default libblas.so.3 is the
# reference BLAS), its threads pinned to torch's, glibc malloc thresholds that stop large temporaries from
# page-faulting on every call, and every OpenBLAS kernel set that loads distinct kernels on this CPU
# (OPENBLAS_CORETYPE unset, SkylakeX, Cooperlake, ...): PyTorch's epoch runs under each, and the ratio is taken
# against the fastest, which is named. Kiln's epoch runs once (Kiln does not use BLAS).
#   bench/train_vs_pytorch.sh [build dir]
#   bench/train_vs_pytorch.sh --quick [build dir]   # 1 epoch each, 2 kernel sets: only checks that it works
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ ${1:-} == --quick ]] && { quick=1; shift; }
build=${1:-build-bench}
epochs=$((quick ? 1 : 3))
source bench/common.sh  # configure_bench_build, find_openblas, choose_openblas_cores, bench_env_core, print_cpu
echo "== machine (every number below comes from it)"
print_cpu
configure_bench_build "$build"
cmake --build "$build" -j"${KILN_BENCH_JOBS:-2}" --target kiln_train_epoch kiln_train_small_batch >/dev/null
find_openblas "$build" >/dev/null ||
  { echo "could not fetch libopenblas0-openmp: PyTorch would run on the reference BLAS" >&2; exit 1; }
choose_openblas_cores $((quick ? 2 : ${#openblas_core_requests[@]}))

median_of() { head -n 1 <<<"$1" | sed -E 's/.*median ([0-9.]+) s.*/\1/'; }  # the first line: its median

# Runs PyTorch's side ("$@") under every kernel set; sets best (seconds) and best_label.
fastest_pytorch() {
  best="" best_label=""
  local i torch t
  for i in "${!blas_cores[@]}"; do
    torch=$(bench_env_core "${blas_cores[i]}" "$threads" "$@")
    echo "$torch  [OpenBLAS ${blas_core_labels[i]}]"
    t=$(median_of "$torch")
    if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then
      best=$t best_label=${blas_core_labels[i]}
    fi
  done
}

for batch in 64 256; do
  for threads in 1 2; do
    kiln=$("$build/bench/kiln_train_epoch" --batch $batch --threads $threads --epochs $epochs)
    echo "$kiln"
    fastest_pytorch /usr/bin/python3 bench/train_epoch_pytorch.py --batch $batch --threads $threads --epochs $epochs
    python3 -c "print(f'  batch $batch, $threads thread(s): Kiln is {$best / $(median_of "$kiln"):.2f}x faster than PyTorch per epoch (PyTorch at its fastest, OpenBLAS $best_label)')"
  done
done

threads=1
kiln=$("$build/bench/kiln_train_small_batch" --epochs $((quick ? 1 : 5)))
echo "$kiln"
fastest_pytorch /usr/bin/python3 bench/train_small_batch_pytorch.py --epochs $((quick ? 1 : 5))
python3 -c "print(f'  small-batch training (batch 32, 1 thread): Kiln is {$best / $(median_of "$kiln"):.2f}x faster than PyTorch per epoch (PyTorch at its fastest, OpenBLAS $best_label)')"
