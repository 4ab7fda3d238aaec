# What bench/run.sh and bench/train_vs_pytorch.sh share (sourced, not run): the build folder, PyTorch's BLAS and
# the OpenBLAS kernel sets it is tried under, the CPU report, and the environment every benchmark process runs
# in. See bench/README.md, "How PyTorch is configured".

# install_bench_packages: the Debian packages the benchmarks build against (Google Benchmark, libtorch, and oneDNN
# for the vendor ceiling), through scripts/install-deps.sh; quiet when they are there. Without oneDNN the run
# goes on without its column.
install_bench_packages() {
  scripts/install-deps.sh --only libbenchmark-dev libtorch-dev libdnnl-dev ||
    echo "!! could not install the benchmarks' packages (libbenchmark-dev libtorch-dev libdnnl-dev)" >&2
}

# configure_bench_build BUILD: a new build folder gets only what the benchmarks need; an existing one (a
# developer's) keeps its tests and samples and only gains the benchmarks (a non-Release one is flagged).
configure_bench_build() {
  local build=$1
  if [[ -f $build/CMakeCache.txt ]]; then
    cmake -S . -B "$build" -DKILN_BUILD_BENCH=ON >/dev/null
    local build_type
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
    [[ $build_type == Release ]] || echo "!! $build is a '$build_type' build, not Release: these are not Release timings" >&2
  else
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_BENCH=ON -DKILN_BUILD_TESTS=OFF \
      -DKILN_BUILD_SAMPLES=OFF >/dev/null
  fi
}

# find_openblas BUILD: sets blas_path to the folder to put first on LD_LIBRARY_PATH so that libtorch and PyTorch
# use OpenBLAS's OpenMP build ("" where the system's libblas.so.3 already is it). libopenblas0-openmp, not
# Debian's default -pthread: libtorch runs its own loops on OpenMP (libgomp), and OpenBLAS's own pthreads and
# libgomp's spinning workers then fight over the cores (2 threads, MLP-S batch 256: 12 ms instead of 0.37 ms).
# Debian's default libblas.so.3 is the reference BLAS; the package is downloaded and unpacked into BUILD/openblas
# (nothing is installed). Returns 1, with blas_path "", if it cannot be fetched.
find_openblas() {
  local build=$1 libdir=/usr/lib/x86_64-linux-gnu variant=openmp
  blas_path=""
  if readlink -f "$libdir/libblas.so.3" | grep -q "openblas-$variant"; then
    echo "== BLAS: the system's libblas.so.3 is OpenBLAS ($(readlink -f "$libdir/libblas.so.3"))"
    return 0
  fi
  local local_dir=$build/openblas
  blas_path=$(mkdir -p "$local_dir" && cd "$local_dir" && pwd)$libdir/openblas-$variant  # $build may be absolute
  if [[ ! -e $blas_path/libblas.so.3 ]]; then
    echo "== BLAS: libblas.so.3 is $(readlink -f "$libdir/libblas.so.3"), not OpenBLAS's OpenMP build: fetching libopenblas0-$variant"
    if ! (cd "$local_dir" && apt-get download "libopenblas0-$variant" 2>/dev/null) ||
       ! dpkg -x "$local_dir"/libopenblas0-"$variant"_*.deb "$local_dir"; then
      blas_path=""
      return 1
    fi
  fi
  echo "== BLAS: OpenBLAS from $blas_path (LD_LIBRARY_PATH)"
}

# bench_env_core CORE THREADS CMD...: runs CMD as every benchmark process runs: OpenBLAS's kernel set CORE
# (OPENBLAS_CORETYPE=CORE; "auto": unset, OpenBLAS detects it, whatever the caller's environment forces), its
# threads pinned to the benchmark's, glibc malloc thresholds that stop large temporaries from page-faulting on
# every call, and the OpenBLAS from find_openblas.
bench_env_core() {
  local coretype=()
  [[ $1 == auto ]] || coretype=(OPENBLAS_CORETYPE="$1")
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${coretype[@]}" \
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456 \
    OPENBLAS_NUM_THREADS="$2" ${blas_path:+LD_LIBRARY_PATH=$blas_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "${@:3}"
}

# bench_env THREADS CMD...: bench_env_core with OpenBLAS's own choice of kernels (Kiln's processes: Kiln has no BLAS).
bench_env() { bench_env_core auto "$@"; }

# print_cpu: which CPU every number of the run comes from (lscpu's model name, family, model, stepping), once.
print_cpu() {
  lscpu | grep -E '^(Model name|CPU family|Model|Stepping|CPU\(s\)|Thread\(s\) per core|L2 cache|L3 cache):' |
    sed 's/  */ /g'
  echo "AVX-512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); AMX: $(grep -q amx_tile /proc/cpuinfo && echo yes || echo no)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
}

# ---- PyTorch's best OpenBLAS kernels ----------------------------------------------------------------------------
# OpenBLAS's own detection can pick a slower kernel set than the CPU runs (a CPU model it does not know gets an
# older set, down to SSE3 "Prescott"), so PyTorch's side runs under each set that makes sense for x86-64 with
# AVX2/AVX-512 and the fastest is kept per case. Kiln's side runs once: Kiln does not use BLAS.
openblas_core_requests=(auto SkylakeX Cooperlake SapphireRapids Zen Haswell)

# openblas_core REQUEST: prints "<kernel set loaded> <known|unknown>" for OPENBLAS_CORETYPE=REQUEST with the
# OpenBLAS of find_openblas ("none" where libblas.so.3 is not OpenBLAS). OpenBLAS does not fail on a name it does
# not know: it prints "Core not found" (OPENBLAS_VERBOSE) and falls back to a set of its choice; "unknown" says so.
openblas_core() {
  local log core
  log=$(bench_env_core "$1" 1 env OPENBLAS_VERBOSE=2 /usr/bin/python3 -c 'import ctypes; ctypes.CDLL("libblas.so.3")' 2>&1) || true
  core=$(sed -n 's/^Core: //p' <<<"$log" | head -1)
  echo "${core:-none} $(grep -q 'Core not found' <<<"$log" && echo unknown || echo known)"
}

# core_missing_flag CORE: the first CPU feature (as /proc/cpuinfo names it) that OpenBLAS's kernel set CORE uses and
# this CPU lacks; empty where it has them all. OpenBLAS loads a forced set without checking: on a CPU without
# AVX-512, OPENBLAS_CORETYPE=SkylakeX dies of an illegal instruction in its first GEMM (seen on Zen 3).
core_missing_flag() {
  local flags flag
  case $1 in
    SkylakeX) flags="avx512f avx512dq avx512bw avx512vl" ;;
    Cooperlake) flags="avx512f avx512dq avx512bw avx512vl avx512_bf16" ;;
    SapphireRapids) flags="avx512f avx512dq avx512bw avx512vl avx512_bf16 amx_tile" ;;
    Haswell | Zen) flags="avx2 fma" ;;
    *) flags="" ;;
  esac
  for flag in $flags; do
    grep -qw "$flag" /proc/cpuinfo || { echo "$flag"; return 0; }
  done
}

# core_label REQUEST CORE: a kernel set's name in the tables, as kiln_vs_torch and bench_pytorch.py print it.
core_label() {
  if [[ $2 == none ]]; then echo "not OpenBLAS"
  elif [[ $1 == auto ]]; then echo "$2 (auto)"
  else echo "$2"
  fi
}

# choose_openblas_cores MAX: sets blas_cores to the OPENBLAS_CORETYPE values to try ("auto" first, always), one per
# distinct kernel set and at most MAX, and blas_core_labels to their names as the tables print them ("SkylakeX
# (auto)", "Zen"); prints what every candidate loads and why any is left out.
choose_openblas_cores() {
  local max=$1 request core known why fallback missing seen=" "
  blas_cores=() blas_core_labels=()
  echo "== OpenBLAS kernel sets for PyTorch (OPENBLAS_CORETYPE; each in its own processes, the fastest kept per case)"
  for request in "${openblas_core_requests[@]}"; do
    read -r core known < <(openblas_core "$request")
    why=""  # why the candidate is left out; empty: it is tried
    if [[ $request != auto ]]; then
      missing=$(core_missing_flag "$core")
      if [[ $core == none ]]; then why="not OpenBLAS"
      elif [[ -n $missing ]]; then why="its kernels need $missing, which this CPU lacks"
      elif [[ $seen == *" $core "* ]]; then why="the same kernels as an earlier candidate"
      elif ((${#blas_cores[@]} >= max)); then why="at most $max kernel sets in this run"
      fi
    fi
    if [[ -z $why ]]; then
      blas_cores+=("$request")
      blas_core_labels+=("$(core_label "$request" "$core")")
      seen+="$core "
    fi
    fallback=""
    [[ $known == unknown ]] && fallback="!! not a name this OpenBLAS knows ('Core not found'): it fell back to $core; "
    printf '   %-15s -> %-11s %s%s%s\n' "$request" "$core" "$fallback" "${why:+skipped: }" "${why:-tried}"
  done
}
