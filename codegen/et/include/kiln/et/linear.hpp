// Linear's forward: y = x W^T + b on a tile of rows, as a register-blocked GEMM.
//
// The weight [Out, In] (PyTorch's layout) is packed once, when the model's parameters change, into groups of
// up to linear_block_group blocks of simd_width outputs, the blocks of a group interleaved per input so the
// micro-kernel reads one contiguous stream: packed[group][i][block in group][lane] = W[o][i] with
// o = (group * linear_block_group + block) * simd_width + lane (zero past Out).
// The micro-kernel keeps kRows x kBlocks accumulator vectors in registers; per input feature it loads kBlocks
// weight vectors and broadcasts one x per row, so every weight load feeds kRows FMAs. The loops around it
// walk groups of kBlocks blocks, then chunks of linear_chunk inputs (whose weights stay in cache while every
// row block of the tile uses them, prefetching the next chunk's: WeightsAhead), then row blocks. Each
// chunk's sum starts from zero and is added to y, so rounding errors grow with the chunk length, not with In (this
// keeps a 784-wide layer within PyTorch's 1e-5 even after a train-mode BatchNorm amplifies them).
// A matrix of at most linear_dot_out outputs runs as dot products along the inputs instead (linear_dots): a block
// of simd_width outputs would leave most of its lanes idle. Each of its packed vectors holds P outputs (Out rounded
// up to 1, 2 or 4) for c = simd_width / P consecutive inputs (linear_dot_chunk): packed[q][o * c + j] =
// W[o][q * c + j] (zero past Out and In).
#pragma once

#include <kiln/dsl/layers/linear.hpp>
#include <kiln/et/eval.hpp>
#include <kiln/et/simd.hpp>
#include <kiln/et/vmath.hpp>

#include <algorithm>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace kiln::et {

inline constexpr index_t linear_blocks(index_t out) { return (out + simd_width - 1) / simd_width; }
inline constexpr index_t linear_packed_size(index_t in, index_t out) { return linear_blocks(out) * in * simd_width; }

// Register blocking: kRows x kBlocks accumulators (24 of AVX-512's 32 registers; 12 of AVX2's 16, the 6 x 16 tile
// of BLIS's Haswell and Zen kernels: MLP-S built for AVX2 at batch 256 and 4096 on Zen 5 ran 8% faster than in 4 x 16
// tiles, whose 8 chains of FMAs did not cover two FMA units' latency; SSE2 alike either way).
inline constexpr int linear_rows = 6;
inline constexpr int linear_block_group = simd_width == 16 ? 4 : 2;
// Inputs per chunk: 256, which the tiles of rows read from L2 (an AVX-512 group's 64 KiB, an AVX2 group's 16
// x 256 x 4 = 16 KiB), the same length for every vector width (AVX-512, AVX2, SSE). Chunks of 128,
// whose AVX-512 group (32 KiB) was to stay in L1, filled Zen 4's 32 KiB L1 and lost to chunks of 256 there
// (family 25 model 17, one thread, GFLOP/s of 116 at peak, batch 32 / 256 / 4096: mlp_norm 100 / 103 / 103 ->
// 106 / 106 / 106, resmlp6 100 / 102 / 102 -> 103 / 104 / 104, MLP-S 107 / 113 / 110 -> 113 / 114 / 112); on Zen
// 3 (AVX2, 32 KiB L1, FMA peak about 102 GFLOP/s) Linear(256, 512), (512, 256) and (784, 256) ran on 36-60 rows
// at 84-88 GFLOP/s in chunks of 128, 88-93 in chunks of 256, and 93-99 in one chunk per layer, but that sum is too
// long: net_seed's 784-input layer then missed its train-mode golden (1.5x the tolerance after BatchNorm1d).
inline constexpr index_t linear_chunk = 256;
// One row reuses no weights, so its chunks only bound the sums' rounding; every chunk's sum going through y cost
// batch 1 on Zen 4 (family 25 model 17) 2-6% in chunks of 128 (mlp_norm 38.9 -> 36.7 us in one of 512).
inline constexpr index_t linear_one_row_chunk = 512;
// One row (batch 1) has one FMA chain per output block; its inputs go round this many sets of accumulators
// instead, summed at the end (linear_dots' one-row tile likewise). Tiny 16-32-32-4's three kernels, each waiting
// for the one before, on Zen 4: 70 ns in 2 sets (chains of 8 and 16 FMAs, 8 in the Linear(32, 4)), 62 in 4.
inline constexpr int linear_one_row_sets = 4;
// Layers of at most this many inputs are one chunk known at compile time, their loop over inputs unrolled.
inline constexpr index_t linear_short_in = 128;
inline constexpr index_t linear_dot_out = 4;
inline constexpr index_t linear_dot_outputs(index_t out) { return out <= 2 ? std::max<index_t>(out, 1) : 4; }
inline constexpr int linear_dot_chunk(index_t out) { return simd_width / static_cast<int>(linear_dot_outputs(out)); }
// With one row (batch 1), the micro-kernel streams the weights, which a network larger than L2 reads from L3
// on every call. Whether prefetching them this far ahead helps depends on the CPU's own prefetchers, so it is
// chosen for the CPU the program runs on (linear_prefetch_weights).
inline constexpr int linear_prefetch_bytes = 2048;
// With several row blocks, the weights the next chunk reads are prefetched into L2 while the row blocks run through
// this one: linear_forward hands each row block a share of their cache lines, which its tile prefetches before its
// loop over inputs. A network whose weights outgrow L2 reads each chunk from L3 in its first row block, at L3's
// latency, then from L2. Intel Xeon (2 MiB L2), one thread, us at batch 256 / 4096: three Linear(512, 512)
// 2209-2270 / 36269-36957 -> 2019-2032 / 34699-35518, mlp_norm 2359-2434 / 38027-39422 -> 2200-2267 / 35886-36336
// (with a line every 2 inputs; every 1 or 4, or into L1 or L3, no better). Spread over the loop, the prefetches
// split it in two, and the unrolled loop of a short layer (kShortIn) with it: on Zen 3 (AVX2, 512 KiB L2) Bilinear
// at 256 went 600-720 -> 860-1180 us, MLP-S 1640-1840 -> 1970-2170; all before the loop, 600-650 and 1640-1760.
struct WeightsAhead {
  const char* start = nullptr;
  index_t lines = 0;
};

// True on Zen 5 (AMD family 26), where the hardware prefetcher alone fell behind: batch 1 mlp_norm (3 MB) 33-34
// -> 29-30 us, resmlp 22 -> 19-20 us (1, 2 and 4 KiB ahead within noise of each other). On Zen 4 (family 25
// model 17) prefetching cost 12-17% (mlp_norm 39 -> 45 us, resmlp6 76 -> 88-93 us) at every distance from 512 B
// to 8 KiB and with every locality hint; on Zen 3 neither could be told apart from the other in that host's
// noise; the Intel Xeon's batch-1 numbers were measured without it.
inline bool linear_prefetch_weights() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool zen5 = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amd = ebx == 0x68747541 && edx == 0x69746e65 && ecx == 0x444d4163;  // "AuthenticAMD"
    if (!amd || !__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const unsigned base_family = (eax >> 8) & 0xf;
    return base_family + (base_family == 0xf ? (eax >> 20) & 0xff : 0) == 26;
  }();
  return zen5;
#else
  return false;
#endif
}

#if defined(__GNUC__) && !defined(__clang__)
// g++ -O3 warns that offsets could overflow for 2^59 elements; layer sizes are far below that. The pragma holds
// only where g++ compiles these functions on their own: inlined into a caller with constant sizes (a model's
// weight packing) they warned there, so the two below are not inlined (copies, where the sizes gain nothing).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif

// dst[c][r] = src[r][c] for a [rows, cols] matrix, simd_width x simd_width blocks at a time in registers.
[[gnu::noinline]] inline void transpose_matrix(const float* src, index_t rows, index_t cols, float* dst) {
  constexpr index_t n = simd_width;
  index_t r0 = 0;
  for (; r0 + n <= rows; r0 += n) {
    index_t c0 = 0;
    for (; c0 + n <= cols; c0 += n) {
      vfloat v[n];
      for (index_t r = 0; r < n; ++r) v[r] = load(src + (r0 + r) * cols + c0);
      transpose_block(v);
      for (index_t c = 0; c < n; ++c) store(dst + (c0 + c) * rows + r0, v[c]);
    }
    for (; c0 < cols; ++c0)
      for (index_t r = r0; r < r0 + n; ++r) dst[c0 * rows + r] = src[r * cols + c0];
  }
  for (; r0 < rows; ++r0)
    for (index_t c = 0; c < cols; ++c) dst[c * rows + r0] = src[r0 * cols + c];
}

// Packs the matrix M [out, in] with M[o][i] = w[o * stride_o + i * stride_i] (PyTorch's weight: stride_o = in,
// stride_i = 1; its transpose: stride_o = 1, stride_i = the weight's in). Whole blocks of simd_width outputs
// are vector copies (stride_o = 1) or in-register transposes of square blocks (stride_i = 1); the packing runs
// after every optimizer step, where an element-by-element gather cost as much as the Adam update itself.
[[gnu::noinline]] inline void pack_linear_matrix(const float* w, index_t in, index_t out, index_t stride_o,
                                                 index_t stride_i, float* packed) {
  if (out <= linear_dot_out) {  // linear_dots' layout
    const index_t c = linear_dot_chunk(out);
    for (index_t i0 = 0; i0 < in; i0 += c)
      for (index_t o = 0; o < linear_dot_outputs(out); ++o)
        for (index_t i = i0; i < i0 + c; ++i) *packed++ = o < out && i < in ? w[o * stride_o + i * stride_i] : 0.0f;
    return;
  }
  constexpr index_t n = simd_width;
  const index_t blocks = linear_blocks(out);
  for (index_t g0 = 0; g0 < blocks; g0 += linear_block_group) {
    const index_t nb = std::min<index_t>(linear_block_group, blocks - g0);
    float* group = packed + g0 * in * n;
    auto dst = [&](index_t i, index_t k) { return group + (i * nb + k) * n; };
    // Full output blocks with W's rows contiguous: square blocks transposed in registers, input block by input
    // block so that the group's writes stay contiguous.
    index_t i_done = 0;
    const index_t full_blocks = std::min(nb, out / n - g0);
    if (stride_i == 1 && full_blocks > 0) {
      for (; i_done + n <= in; i_done += n)
        for (index_t k = 0; k < full_blocks; ++k) {
          vfloat v[n];
          for (index_t lane = 0; lane < n; ++lane) v[lane] = load(w + ((g0 + k) * n + lane) * stride_o + i_done);
          transpose_block(v);
          for (index_t j = 0; j < n; ++j) store(dst(i_done + j, k), v[j]);
        }
    }
    for (index_t k = 0; k < nb; ++k) {
      const index_t o0 = (g0 + k) * n;
      index_t i = k < full_blocks ? i_done : 0;
      if (o0 + n <= out && stride_o == 1)
        for (; i < in; ++i) store(dst(i, k), load(w + o0 + i * stride_i));
      for (; i < in; ++i)
        for (index_t lane = 0; lane < n; ++lane) {
          const index_t o = o0 + lane;
          dst(i, k)[lane] = o < out ? w[o * stride_o + i * stride_i] : 0.0f;
        }
    }
  }
}
inline void pack_linear_weight(const float* w, index_t in, index_t out, float* packed) {
  pack_linear_matrix(w, in, out, in, 1, packed);
}

// One register tile: rows [0, kRows) of x (row stride in), inputs [0, count) of the chunk starting at `x`,
// the kBlocks output blocks of the group starting at block0 (wp: the group's weights at the chunk's first
// input). `first`: the chunk starts the sum (bias, or zero), and is stored; otherwise it is added to y.
// `last`: the chunk ends the sum, and the stored vectors go through `epilogue`. kShortIn, where nonzero, is
// both `in` and `count`, known at compile time (a layer of one chunk): the loop over inputs is unrolled.
// With one row, inputs go round linear_one_row_sets accumulator sets: that many independent FMA chains. With more,
// the lines of `ahead` are prefetched first.
template <int kRows, int kBlocks, index_t kShortIn, class Epilogue>
inline void linear_micro_kernel(const float* x, index_t in_any, const float* wp, index_t count_any, bool first,
                                bool last, const float* bias, float* y, index_t out, index_t block0, Epilogue epilogue,
                                WeightsAhead ahead) {
  const index_t in = kShortIn ? kShortIn : in_any, count = kShortIn ? kShortIn : count_any;
  vfloat acc[kRows][kBlocks];
#pragma GCC unroll 8
  for (int k = 0; k < kBlocks; ++k) {
    vfloat start{};
    const index_t o0 = block0 * simd_width + k * simd_width;
    if (first && bias) {
      start = o0 + simd_width <= out ? load(bias + o0) : load_first(bias + o0, out - o0);
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) acc[r][k] = start;
  }
  if constexpr (kRows == 1) {
    constexpr int sets = linear_one_row_sets;
    static_assert(sets == 4, "the sets' sum below adds four");
    vfloat more[sets - 1][kBlocks] = {};  // input i goes to acc[0] where i % sets == 0, else to more[i % sets - 1]
    const bool prefetch = kShortIn == 0 && linear_prefetch_weights();
    index_t i = 0;
    for (; i + sets <= count; i += sets) {
      if (prefetch) {  // one prefetch per cache line of weights this step reads
        const char* ahead = reinterpret_cast<const char*>(wp + i * kBlocks * simd_width) + linear_prefetch_bytes;
        for (int l = 0; l < sets * kBlocks * static_cast<int>(sizeof(vfloat)) / 64; ++l)
          __builtin_prefetch(ahead + l * 64);
      }
      for (int k = 0; k < kBlocks; ++k) acc[0][k] += broadcast(x[i]) * load(wp + (i * kBlocks + k) * simd_width);
      for (int s = 1; s < sets; ++s)
        for (int k = 0; k < kBlocks; ++k)
          more[s - 1][k] += broadcast(x[i + s]) * load(wp + ((i + s) * kBlocks + k) * simd_width);
    }
    for (int s = 0; s < sets - 1; ++s)  // the last count % sets inputs (a bounded loop: g++ warned of 2^62 steps)
      if (i + s < count)
        for (int k = 0; k < kBlocks; ++k)
          acc[0][k] += broadcast(x[i + s]) * load(wp + ((i + s) * kBlocks + k) * simd_width);
    for (int k = 0; k < kBlocks; ++k) acc[0][k] = (acc[0][k] + more[0][k]) + (more[1][k] + more[2][k]);
  } else {
    for (index_t line = 0; line < ahead.lines; ++line) __builtin_prefetch(ahead.start + line * 64, 0, 2);  // into L2
    for (index_t i = 0; i < count; ++i) {
      vfloat w[kBlocks];
      for (int k = 0; k < kBlocks; ++k) w[k] = load(wp + (i * kBlocks + k) * simd_width);
      for (int r = 0; r < kRows; ++r) {
        const vfloat xr = broadcast(x[r * in + i]);
        for (int k = 0; k < kBlocks; ++k) acc[r][k] += xr * w[k];
      }
    }
  }
  // The tile's sums, through the epilogue where the chunk is the last, stored.
  auto sum = [&](int r, int k) {
    const index_t o0 = block0 * simd_width + k * simd_width;
    const float* yr = y + r * out + o0;
    return first ? acc[r][k] : (o0 + simd_width <= out ? load(yr) : load_first(yr, out - o0)) + acc[r][k];
  };
  auto put = [&](int r, int k, vfloat v) {
    const index_t o0 = block0 * simd_width + k * simd_width;
    if (o0 + simd_width <= out) store(y + r * out + o0, v);
    else store_first(y + r * out + o0, v, out - o0);
  };
  if constexpr (kRows > 1 && PackFunction<Epilogue>) {  // a costly epilogue, on all the sums in packs
    vfloat v[kBlocks * kRows];
    for (int k = 0; k < kBlocks; ++k)
      for (int r = 0; r < kRows; ++r) v[k * kRows + r] = sum(r, k);
    if (last) map_in_place(v, kBlocks * kRows, epilogue);
    for (int k = 0; k < kBlocks; ++k)
      for (int r = 0; r < kRows; ++r) put(r, k, v[k * kRows + r]);
  } else {
    // Vector by vector, in registers. Through an array the sums went to the stack and back; the pragmas unroll the
    // loops, which g++ otherwise kept, with the accumulators, on the stack. On Zen 3: tiny 16-32-32-4 at batch 4096
    // 183 -> 167 us; the Fashion-MNIST network's training step at batch 64 (its weight gradient a GEMM of K = 64)
    // 765 -> 713 us. One row's few vectors likewise (map_in_place, left out of line by g++, cost tiny at batch 1
    // 190 -> 154 ns).
#pragma GCC unroll 8
    for (int k = 0; k < kBlocks; ++k)
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) put(r, k, last ? epilogue(sum(r, k)) : sum(r, k));
  }
}

template <int kBlocks, index_t kShortIn, class Epilogue, int... R>
inline void linear_rows_dispatch(int rows, std::integer_sequence<int, R...>, const float* x, index_t in,
                                 const float* wp, index_t count, bool first, bool last, const float* bias, float* y,
                                 index_t out, index_t block0, Epilogue epilogue, WeightsAhead ahead) {
  // Only full tiles and one-row tiles (batch 1) take kShortIn: each takes its own copy of the kernel per layer
  // (compile time: a test of many random networks 27 -> 47 s with every tile's, 32 s with these), where the other
  // left-over rows share one per shape.
  ((rows == R + 1 ? linear_micro_kernel<R + 1, kBlocks, (R + 1 == linear_rows || R == 0 ? kShortIn : 0)>(
                        x, in, wp, count, first, last, bias, y, out, block0, epilogue, ahead)
                  : void()),
   ...);
}

template <index_t kShortIn, class Epilogue, int... B>
inline void linear_dispatch(int rows, int blocks, std::integer_sequence<int, B...>, const float* x, index_t in,
                            const float* wp, index_t count, bool first, bool last, const float* bias, float* y,
                            index_t out, index_t block0, Epilogue epilogue, WeightsAhead ahead) {
  ((blocks == B + 1
        ? linear_rows_dispatch<B + 1, kShortIn>(rows, std::make_integer_sequence<int, linear_rows>{}, x, in, wp, count,
                                                first, last, bias, y, out, block0, epilogue, ahead)
        : void()),
   ...);
}

// Rows per tile of linear_dots: 8 chains of FMAs, enough for two FMA units (Linear(32, 4) on Zen 4 in tiles of 4
// rows: 24 against 14 us).
inline constexpr int linear_dot_rows_per_tile = 8;
// group_sums' lane o * c + r moved to lane r * kOut + o (y's order), for r < n.
template <int kOut, int c, int n, int... L>
[[gnu::always_inline]] inline vfloat row_major(vfloat v, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(v, v, (L < n * kOut ? L % kOut * c + L / kOut : L)...);
}

// One tile of linear_dots: kRows rows x kOut outputs, with c = linear_dot_chunk(kOut). Row r's accumulator holds,
// in lane o * c + j, the products of output o with inputs j, j + c, j + 2c, ...: its x is a chunk of c inputs
// repeated across the vector (load_repeated), and every vector of weights serves all kRows rows. group_sums gives
// up to c rows in one vector, lane o * c + r; row_major puts them in y's order, then they are stored. `start`: the
// bias in those lanes, or zero. (Zen 4 spends a shuffle on each 16-byte repeating load: Linear(32, 4) at batch
// 4096 takes 15 us, where its FMAs need 9.) Unrolled and flattened: with the loops kept, or a helper out of line,
// g++ kept the accumulators on the stack (Linear(32, 4) at batch 4096: 16.3 against 15.4 us).
template <int kOut, int kRows, class Epilogue>
[[gnu::flatten]] inline void linear_dot_tile(const float* x, index_t in, const float* w, vfloat start, float* y,
                                             bool accumulate, Epilogue epilogue) {
  constexpr int c = linear_dot_chunk(kOut), n = std::min(c, kRows);
  constexpr index_t outputs = linear_dot_outputs(kOut);  // per packed vector
  // One row takes its chunks round linear_one_row_sets sums (acc[0], then the zeros past it), summed at the end.
  constexpr int sets = kRows == 1 ? linear_one_row_sets : 1;
  vfloat acc[std::max((kRows + n - 1) / n * n, sets)] = {};  // rows past kRows: zeros, summed with the last group
  auto add = [&](index_t i, int set, auto load_chunk) {
    const vfloat wv = load(w + i * outputs);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) acc[r + set] += load_chunk(x + r * in + i) * wv;
  };
  const auto repeated = [](const float* p) { return load_repeated<c>(p); };
  index_t i = 0;
  for (; i + sets * c <= in; i += sets * c)
#pragma GCC unroll 4
    for (int set = 0; set < sets; ++set) add(i + set * c, set, repeated);
  for (; i + c <= in; i += c) add(i, 0, repeated);
  if (i < in) add(i, 0, [n = in - i](const float* p) { return load_repeated_first<c>(p, n); });
  if constexpr (sets > 1) {
    static_assert(sets == 4, "the sets' sum adds four");
    acc[0] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
  constexpr auto lanes = std::make_integer_sequence<int, simd_width>{};
#pragma GCC unroll 8
  for (int r0 = 0; r0 < kRows; r0 += n) {  // n rows at a time
    const vfloat v = row_major<kOut, c, n>(group_sums<c, n>(acc + r0), lanes) + start;
    const int stored = std::min(n, kRows - r0) * kOut;
    store_first(y + r0 * kOut, epilogue(accumulate ? v + load_first(y + r0 * kOut, stored) : v), stored);
  }
}

template <int kOut, class Epilogue, int... R>
inline void linear_dot_rows(const float* x, index_t rows, index_t in, const float* w, const float* bias, float* y,
                            bool accumulate, Epilogue epilogue, std::integer_sequence<int, R...>) {
  vfloat start{};  // lane l: bias[l % kOut] (a loop of lane writes was 16 masked broadcasts)
  if (bias && !accumulate)
    start = detail::repeat_first<kOut>(load_first(bias, kOut), std::make_integer_sequence<int, simd_width>{});
  index_t r0 = 0;
  for (; r0 + linear_dot_rows_per_tile <= rows; r0 += linear_dot_rows_per_tile)
    linear_dot_tile<kOut, linear_dot_rows_per_tile>(x + r0 * in, in, w, start, y + r0 * kOut, accumulate, epilogue);
  const index_t left = rows - r0;  // fewer than linear_dot_rows_per_tile
  ((left == R + 1 ? linear_dot_tile<kOut, R + 1>(x + r0 * in, in, w, start, y + r0 * kOut, accumulate, epilogue)
                  : void()),
   ...);
}

// y[rows, out] = x W^T (+ b) for out <= linear_dot_out, W packed by pack_linear_matrix (the layout above): tiles
// of linear_dot_rows_per_tile rows, one chain of FMAs per row. Against tiles of 4 rows with a vector of 16 inputs
// for each (row, output), us at batch 256 and 4096 (Zen 4, scratch harness): Linear(32, 4) 2.1 and 33 -> 0.94 and
// 15, Linear(256, 4) 7.7 and 134 -> 6.2 and 104, Linear(32, 2) 1.3 and 50 -> 0.55 and 9.0, Linear(16, 1) 1.9 and
// 37 -> 0.37 and 5.3; one loss, Linear(1024, 1) at 256: 11.2 -> 13.3 (8 rows 4 KiB apart share L1's sets).
template <class Epilogue>
inline void linear_dots(const float* x, index_t rows, index_t in, index_t out, const float* w, const float* bias,
                        float* y, bool accumulate, Epilogue epilogue) {
  constexpr auto left = std::make_integer_sequence<int, linear_dot_rows_per_tile - 1>{};
  switch (out) {
    case 1: return linear_dot_rows<1>(x, rows, in, w, bias, y, accumulate, epilogue, left);
    case 2: return linear_dot_rows<2>(x, rows, in, w, bias, y, accumulate, epilogue, left);
    case 3: return linear_dot_rows<3>(x, rows, in, w, bias, y, accumulate, epilogue, left);
    default: return linear_dot_rows<4>(x, rows, in, w, bias, y, accumulate, epilogue, left);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// y[rows, out] = x[rows, in] W^T + b, with W packed by pack_linear_weight; with accumulate, y += x W^T.
// `reverse`: take the groups of output blocks last to first; the result is the same. A network whose weights
// are about the size of L2 (MLP-S: 1.07 MB against 1 MiB) evicts, calling it again and again in one order,
// the weights it is about to read; every other call walking them backwards reads first what was read last,
// still in cache (batch 1: 8.1 -> 7.1 us). `epilogue` maps each output vector once its sum is complete.
// kShortIn: `in` where the caller knows it at compile time and it is at most one chunk, else 0 (tiny 16-32-32-4
// at batch 4096: 110 -> 95 us with every tile shape unrolled; linear_rows_dispatch says which are).
template <class Epilogue = NoEpilogue, index_t kShortIn = 0>
inline void linear_forward(const float* x, index_t rows, index_t in, index_t out, const float* packed,
                           const float* bias, float* y, bool accumulate = false, bool reverse = false,
                           Epilogue epilogue = {}) {
  if (out <= linear_dot_out) return linear_dots(x, rows, in, out, packed, bias, y, accumulate, epilogue);
  const index_t blocks = linear_blocks(out);
  const index_t groups = (blocks + linear_block_group - 1) / linear_block_group;
  const index_t chunk = rows == 1 ? linear_one_row_chunk : linear_chunk;
  const index_t row_blocks = (rows + linear_rows - 1) / linear_rows;
  const float* const end = packed + blocks * in * simd_width;
  auto first_block = [&](index_t g) { return (reverse ? groups - 1 - g : g) * linear_block_group; };
  for (index_t g = 0; g < groups; ++g) {
    const index_t b0 = first_block(g);
    const int nb = static_cast<int>(std::min<index_t>(linear_block_group, blocks - b0));
    for (index_t i0 = 0; i0 < in; i0 += chunk) {
      const index_t count = std::min(chunk, in - i0);
      const float* wp = packed + (b0 * in + i0 * nb) * simd_width;
      // The next chunk's weights (the rest of this group's follow its first chunk), as many as this chunk's, a
      // share of their cache lines to each row block.
      const float* next = i0 + count < in     ? wp + count * nb * simd_width
                          : g + 1 < groups ? packed + first_block(g + 1) * in * simd_width
                                           : end;
      const index_t next_bytes = std::min<index_t>(count * nb * simd_width, end - next) * sizeof(float);
      const index_t next_lines = row_blocks > 1 ? (next_bytes + 63) / 64 : 0;
      const index_t lines_per_block = (next_lines + row_blocks - 1) / row_blocks;
      for (index_t r0 = 0; r0 < rows; r0 += linear_rows) {
        const int nr = static_cast<int>(std::min<index_t>(linear_rows, rows - r0));
        const index_t first_line = r0 / linear_rows * lines_per_block;
        const WeightsAhead ahead{reinterpret_cast<const char*>(next) + first_line * 64,
                                 std::clamp<index_t>(next_lines - first_line, 0, lines_per_block)};
        linear_dispatch<kShortIn>(nr, nb, std::make_integer_sequence<int, linear_block_group>{}, x + r0 * in + i0, in,
                                  wp, count, i0 == 0 && !accumulate, i0 + count == in, bias, y + r0 * out, out, b0,
                                  epilogue, ahead);
      }
    }
  }
}

// The plain loop, for the unfused reference evaluator: one dot product per output.
inline void linear_forward_reference(const float* x, index_t rows, index_t in, index_t out, const float* w,
                                     const float* bias, float* y) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (index_t i = 0; i < in; ++i) acc += static_cast<double>(x[r * in + i]) * w[o * in + i];
      y[r * out + o] = static_cast<float>(acc);
    }
}

template <index_t In, index_t Out, bool Bias>
struct Eval<nn::Linear<In, Out, Bias>> {
  static constexpr index_t packed_size = linear_packed_size(In, Out);
  static constexpr index_t packed_t_size = linear_packed_size(Out, In);
  static void pack(const float* weight, float* packed) { pack_linear_weight(weight, In, Out, packed); }
  static void pack_t(const float* weight, float* packed) { pack_linear_matrix(weight, Out, In, 1, In, packed); }

  static bool passes_through(const nn::Linear<In, Out, Bias>&, bool) { return false; }
  static void forward(const nn::Linear<In, Out, Bias>& layer, Dims in, const LayerParams& p, const float* x, float* y,
                      index_t samples, const TileContext& ctx) {
    forward_then(layer, in, p, x, y, samples, ctx, NoEpilogue{});
  }
  // The forward with the element-wise layer after it applied as each output vector is stored.
  template <class Epilogue>
  static void forward_then(const nn::Linear<In, Out, Bias>&, Dims in, const LayerParams& p, const float* x, float* y,
                           index_t samples, const TileContext& ctx, Epilogue epilogue) {
    constexpr index_t short_in = In <= linear_short_in ? In : 0;
    linear_forward<Epilogue, short_in>(x, samples * (in.numel() / In), In, Out, p.packed_weight, p.bias, y, false,
                                       ctx.reverse_weights, epilogue);
  }
  // dx = dy W (the transposed weight, packed), dW += dy^T x, db += sum over rows of dy: two GEMMs on the
  // micro-kernel, the second with the tile's rows as the reduction.
  static void backward(const nn::Linear<In, Out, Bias>&, Dims in, const LayerParams& p, const LayerGrads& g,
                       const float* x, const float*, const float* dy, float* dx, index_t samples, const TileContext&) {
    const index_t rows = samples * (in.numel() / In);
    if (dx) linear_forward(dy, rows, Out, In, p.packed_weight_t, nullptr, dx);
    thread_local float_buffer dy_t, x_packed;
    dy_t.resize(static_cast<std::size_t>(Out * rows));
    x_packed.resize(static_cast<std::size_t>(linear_packed_size(rows, In)));
    transpose_matrix(dy, rows, Out, dy_t.data());
    pack_linear_matrix(x, rows, In, 1, In, x_packed.data());  // x^T: [In, rows]
    linear_forward(dy_t.data(), Out, rows, In, x_packed.data(), nullptr, g.weight, /*accumulate=*/true);
    if (Bias && g.bias)
      for (index_t r = 0; r < rows; ++r)
        for (index_t o = 0; o < Out; ++o) g.bias[o] += dy[r * Out + o];
  }
  static void forward_reference(const nn::Linear<In, Out, Bias>&, Dims in, const LayerParams& p, const float* x,
                                float* y, index_t samples, const TileContext&) {
    linear_forward_reference(x, samples * (in.numel() / In), In, Out, p.weight, p.bias, y);
  }
};

}  // namespace kiln::et
