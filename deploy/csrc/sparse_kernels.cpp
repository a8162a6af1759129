// Sparse kernels of the deploy runtime: a plain C ABI (no torch headers, so it compiles in seconds), built and
// called through ctypes by deploy/native.py; deploy/kernels.py checks shapes and dtypes before every call.
//
// Layout: every dense operand is feature-major, x_t (features, N) row-major, so one nonzero w_ij of the weight
// reads the N contiguous floats x_t[j, :] (one cache line for N = 16) and the inner loop vectorises over N.
// Weights are CSR (block 1x1) or block-CSR (block br x bc, blocks row-major inside, the matrix padded to whole
// blocks): row_ptr int32 (block rows + 1), col_idx uint16 or int32 (block columns), values fp32, fp16 bits or
// int8 with one fp32 scale per matrix row. Block rows are split between the OpenMP threads so that each gets
// about the same number of stored blocks.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

constexpr int kChunk = 16;  // columns per register block
constexpr int64_t kMaxBlockRows = 64;
constexpr int64_t kMinParallelWork = 32768;  // multiply-adds below which a fork costs more than it saves

enum ValueKind : int32_t { kFloat32 = 0, kFloat16 = 1, kInt8 = 2 };

}  // namespace

extern "C" {

// Mirrored by deploy/native.py (MatrixView); rows and cols are the true (unpadded) sizes.
struct Matrix {
  const int32_t* row_ptr;
  const void* col_idx;
  const void* values;
  const float* scales;  // one per row for int8 values, else null
  int64_t rows, cols, block_rows, block_cols, num_brows, nnz_blocks;
  int32_t index_bytes;  // 2 (uint16) or 4 (int32)
  int32_t value_kind;   // ValueKind
};

}  // extern "C"

namespace {

inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1fu) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    uint32_t e = 113, m = mantissa;
    while (!(m & 0x400u)) { m <<= 1; --e; }
    bits = sign | (e << 23) | ((m & 0x3ffu) << 13);
  }
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
#endif
}

inline float load_value(const float* v, int64_t k) { return v[k]; }
inline float load_value(const uint16_t* v, int64_t k) { return half_to_float(v[k]); }
inline float load_value(const int8_t* v, int64_t k) { return static_cast<float>(v[k]); }

// One CSR row against NB columns of x_t: out[j] = sum_k w_k x_t[col_k, j]. Portable version: independent
// partial sums (the FMA latency, not the loads, limits a single accumulation chain).
template <int NB, typename V, typename I>
inline void csr_row_portable(const V* values, const I* cols, int64_t begin, int64_t end, const float* x,
                             int64_t ldx, float* out) {
  float a[NB] = {}, b[NB] = {};
  int64_t k = begin;
  for (; k + 2 <= end; k += 2) {
    const float w0 = load_value(values, k), w1 = load_value(values, k + 1);
    const float* x0 = x + int64_t(cols[k]) * ldx;
    const float* x1 = x + int64_t(cols[k + 1]) * ldx;
    for (int j = 0; j < NB; ++j) { a[j] += w0 * x0[j]; b[j] += w1 * x1[j]; }
  }
  if (k < end) {
    const float w = load_value(values, k);
    const float* xp = x + int64_t(cols[k]) * ldx;
    for (int j = 0; j < NB; ++j) a[j] += w * xp[j];
  }
  for (int j = 0; j < NB; ++j) out[j] = a[j] + b[j];
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// AVX2: eight nonzeros per step. Their x_t rows are loaded with plain loads (faster than vgatherdps on the
// Zen 3 this was tuned on) and packed so that one 256-bit FMA serves 8 / NB nonzeros of NB columns each.
inline __m256 load_values8(const float* v) { return _mm256_loadu_ps(v); }
inline __m256 load_values8(const uint16_t* v) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
}
inline __m256 load_values8(const int8_t* v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v))));
}
inline __m128 add_halves(__m256 v) { return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); }
inline __m128 pair128(const float* lo, const float* hi) {  // two 64-bit loads -> (lo0, lo1, hi0, hi1)
  return _mm_castpd_ps(_mm_loadh_pd(_mm_load_sd(reinterpret_cast<const double*>(lo)),
                                    reinterpret_cast<const double*>(hi)));
}

// kPacked: x_t rows are exactly NB floats apart (ldx == NB, the usual case), a compile-time stride.
// Kept out of line: inlined into the row loop, its index registers spill to the stack (measured 1.5x slower).
template <int NB, bool kPacked, typename V, typename I>
__attribute__((noinline)) void csr_row_avx2(const V* values, const I* cols, int64_t begin, int64_t end, const float* x,
                         int64_t runtime_ldx, float* out) {
  const int64_t ldx = kPacked ? NB : runtime_ldx;
  if constexpr (NB == 8 || NB == 16) {  // one nonzero fills whole registers: broadcast w, 4 (2) chains
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    constexpr int kChains = NB == 8 ? 4 : 2, kRegs = NB / 8;
    int64_t k = begin;
    for (; k + kChains <= end; k += kChains) {
#pragma GCC unroll 4
      for (int c = 0; c < kChains; ++c) {
        const __m256 w = _mm256_set1_ps(load_value(values, k + c));
        const float* xp = x + int64_t(cols[k + c]) * ldx;
#pragma GCC unroll 2
        for (int r = 0; r < kRegs; ++r) acc[c * kRegs + r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp + 8 * r), acc[c * kRegs + r]);
      }
    }
    for (; k < end; ++k) {
      const __m256 w = _mm256_set1_ps(load_value(values, k));
      const float* xp = x + int64_t(cols[k]) * ldx;
#pragma GCC unroll 2
      for (int r = 0; r < kRegs; ++r) acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp + 8 * r), acc[r]);
    }
    if constexpr (NB == 8) {
      _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    } else {
      _mm256_storeu_ps(out, _mm256_add_ps(acc[0], acc[2]));
      _mm256_storeu_ps(out + 8, _mm256_add_ps(acc[1], acc[3]));
    }
    return;
  } else {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t k = begin;
    for (; k + 8 <= end; k += 8) {
      const __m256 w = load_values8(values + k);
      const I* c = cols + k;
#define SDS2_ROW(i) (x + int64_t(c[i]) * ldx)
      if constexpr (NB == 1) {  // w (8 nonzeros) . x gathered
        acc0 = _mm256_fmadd_ps(w, _mm256_set_ps(*SDS2_ROW(7), *SDS2_ROW(6), *SDS2_ROW(5), *SDS2_ROW(4),
                                                *SDS2_ROW(3), *SDS2_ROW(2), *SDS2_ROW(1), *SDS2_ROW(0)), acc0);
      } else if constexpr (NB == 2) {  // lanes (nonzero c, column j) = (c, j) for c in 0..3, then 4..7
        const __m256 lo = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        const __m256 hi = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7));
        acc0 = _mm256_fmadd_ps(lo, _mm256_set_m128(pair128(SDS2_ROW(2), SDS2_ROW(3)), pair128(SDS2_ROW(0), SDS2_ROW(1))), acc0);
        acc1 = _mm256_fmadd_ps(hi, _mm256_set_m128(pair128(SDS2_ROW(6), SDS2_ROW(7)), pair128(SDS2_ROW(4), SDS2_ROW(5))), acc1);
      } else {  // NB == 4: lanes (nonzero c, column j), two nonzeros per register
        const __m256 w01 = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
        const __m256 w23 = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
        const __m256 w45 = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5));
        const __m256 w67 = _mm256_permutevar8x32_ps(w, _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7));
        acc0 = _mm256_fmadd_ps(w01, _mm256_set_m128(_mm_loadu_ps(SDS2_ROW(1)), _mm_loadu_ps(SDS2_ROW(0))), acc0);
        acc1 = _mm256_fmadd_ps(w23, _mm256_set_m128(_mm_loadu_ps(SDS2_ROW(3)), _mm_loadu_ps(SDS2_ROW(2))), acc1);
        acc0 = _mm256_fmadd_ps(w45, _mm256_set_m128(_mm_loadu_ps(SDS2_ROW(5)), _mm_loadu_ps(SDS2_ROW(4))), acc0);
        acc1 = _mm256_fmadd_ps(w67, _mm256_set_m128(_mm_loadu_ps(SDS2_ROW(7)), _mm_loadu_ps(SDS2_ROW(6))), acc1);
      }
#undef SDS2_ROW
    }
    const __m128 sum4 = add_halves(_mm256_add_ps(acc0, acc1));  // NB=1: 4 partials; NB=2: 2 x 2; NB=4: 4 columns
    float tail[NB] = {};
    for (; k < end; ++k) {
      const float w = load_value(values, k);
      const float* xp = x + int64_t(cols[k]) * ldx;
      for (int j = 0; j < NB; ++j) tail[j] += w * xp[j];
    }
    alignas(16) float s[4];
    _mm_store_ps(s, sum4);
    if constexpr (NB == 1) out[0] = (s[0] + s[1]) + (s[2] + s[3]) + tail[0];
    if constexpr (NB == 2) { out[0] = s[0] + s[2] + tail[0]; out[1] = s[1] + s[3] + tail[1]; }
    if constexpr (NB == 4) for (int j = 0; j < 4; ++j) out[j] = s[j] + tail[j];
  }
}

template <int NB, typename V, typename I>
inline void csr_row(const V* values, const I* cols, int64_t begin, int64_t end, const float* x, int64_t ldx,
                    float* out) {
  if (ldx == NB) csr_row_avx2<NB, true>(values, cols, begin, end, x, ldx, out);
  else csr_row_avx2<NB, false>(values, cols, begin, end, x, ldx, out);
}
#else
template <int NB, typename V, typename I>
inline void csr_row(const V* values, const I* cols, int64_t begin, int64_t end, const float* x, int64_t ldx,
                    float* out) {
  csr_row_portable<NB>(values, cols, begin, end, x, ldx, out);
}
#endif

// acc[r * NB + j] = sum over the stored blocks of block row ``brow`` of W[row r] . x_t[:, j]
template <int NB, typename V, typename I>
inline void block_row_product(const Matrix& m, int64_t brow, const float* x, int64_t ldx, float* acc) {
  const V* values = static_cast<const V*>(m.values);
  const I* cols = static_cast<const I*>(m.col_idx);
  const int64_t begin = m.row_ptr[brow], end = m.row_ptr[brow + 1];
  if (m.block_rows == 1 && m.block_cols == 1) {
    csr_row<NB>(values, cols, begin, end, x, ldx, acc);
    return;
  }
  const int64_t br = m.block_rows, bc = m.block_cols, block_size = br * bc;
  std::fill(acc, acc + br * NB, 0.f);
  for (int64_t k = begin; k < end; ++k) {
    const int64_t col0 = int64_t(cols[k]) * bc, width = std::min(bc, m.cols - col0);
    for (int64_t c = 0; c < width; ++c) {
      const float* xp = x + (col0 + c) * ldx;
      for (int64_t r = 0; r < br; ++r) {
        const float w = load_value(values, k * block_size + r * bc + c);
        for (int j = 0; j < NB; ++j) acc[r * NB + j] += w * xp[j];
      }
    }
  }
}

// y_t[rows of block rows [b0, b1), 0 : NB] = scale * (W x_t)
template <int NB, typename V, typename I>
void block_rows_chunk(const Matrix& m, int64_t b0, int64_t b1, const float* x, int64_t ldx, float* y, int64_t ldy) {
  float acc[kMaxBlockRows * NB];
  for (int64_t brow = b0; brow < b1; ++brow) {
    block_row_product<NB, V, I>(m, brow, x, ldx, acc);
    const int64_t row0 = brow * m.block_rows, height = std::min(m.block_rows, m.rows - row0);
    for (int64_t r = 0; r < height; ++r) {
      const float s = m.scales ? m.scales[row0 + r] : 1.f;
      float* yp = y + (row0 + r) * ldy;
      for (int j = 0; j < NB; ++j) yp[j] = s * acc[r * NB + j];
    }
  }
}

// Columns [0, n) of block rows [b0, b1): chunks of 16 columns, the rest as 8 + 4 + 2 + 1.
template <typename V, typename I>
void block_rows_product(const Matrix& m, int64_t b0, int64_t b1, const float* x, int64_t ldx, int64_t n, float* y,
                        int64_t ldy) {
  int64_t c = 0;
  for (; c + kChunk <= n; c += kChunk) block_rows_chunk<kChunk, V, I>(m, b0, b1, x + c, ldx, y + c, ldy);
  if (n - c >= 8) { block_rows_chunk<8, V, I>(m, b0, b1, x + c, ldx, y + c, ldy); c += 8; }
  if (n - c >= 4) { block_rows_chunk<4, V, I>(m, b0, b1, x + c, ldx, y + c, ldy); c += 4; }
  if (n - c >= 2) { block_rows_chunk<2, V, I>(m, b0, b1, x + c, ldx, y + c, ldy); c += 2; }
  if (n - c >= 1) block_rows_chunk<1, V, I>(m, b0, b1, x + c, ldx, y + c, ldy);
}

using ProductFn = void (*)(const Matrix&, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t);

template <typename I>
ProductFn pick_for_index(int32_t value_kind) {
  switch (value_kind) {
    case kFloat32: return block_rows_product<float, I>;
    case kFloat16: return block_rows_product<uint16_t, I>;
    case kInt8: return block_rows_product<int8_t, I>;
    default: return nullptr;
  }
}

// The product for this matrix's value and index types; null for a malformed matrix.
ProductFn pick_product(const Matrix& m) {
  if (m.block_rows < 1 || m.block_rows > kMaxBlockRows || m.block_cols < 1) return nullptr;
  if ((m.value_kind == kInt8) != (m.scales != nullptr)) return nullptr;
  if (m.index_bytes == 2) return pick_for_index<uint16_t>(m.value_kind);
  if (m.index_bytes == 4) return pick_for_index<int32_t>(m.value_kind);
  return nullptr;
}

// Block-row boundaries giving each of ``parts`` threads about the same number of stored blocks.
std::vector<int64_t> balanced_split(const Matrix& m, int parts) {
  std::vector<int64_t> bounds(parts + 1, m.num_brows);
  bounds[0] = 0;
  for (int p = 1; p < parts; ++p) {
    const int64_t target = m.nnz_blocks * p / parts;
    bounds[p] = std::lower_bound(m.row_ptr, m.row_ptr + m.num_brows + 1, target) - m.row_ptr;
    bounds[p] = std::min(std::max(bounds[p], bounds[p - 1]), m.num_brows);
  }
  return bounds;
}

int pick_threads(const Matrix& m, int64_t columns, int32_t threads) {
  const int64_t work = m.nnz_blocks * m.block_rows * m.block_cols * columns;
  return work < kMinParallelWork ? 1 : std::max(1, static_cast<int>(threads));
}

}  // namespace

extern "C" {

int32_t sds2_abi_version() { return 1; }

// y_t (rows, n) = W x_t for x_t (cols, n). Returns 0, or -1 for a malformed matrix.
int32_t sds2_spmm(const Matrix* m, const float* x, int64_t n, float* y, int32_t threads) {
  const ProductFn product = pick_product(*m);
  if (!product) return -1;
  const int team = pick_threads(*m, n, threads);
  const std::vector<int64_t> bounds = balanced_split(*m, team);
#pragma omp parallel num_threads(team)
  {
    const int t = omp_get_thread_num();
    product(*m, bounds[t], bounds[t + 1], x, n, n, y, n);
  }
  return 0;
}

// DS2 clipped-ReLU recurrence (models/rnn.py ClippedRecurrence; all directions as one block-diagonal U):
// h_t = min(max(inputs_t + U h_{t-1}, 0), clip), h_{-1} = 0. inputs and hidden (steps, units, batch).
int32_t sds2_ds2_recurrence(const Matrix* m, const float* inputs, int64_t steps, int64_t batch, float clip,
                            float* hidden, int32_t threads) {
  const ProductFn product = pick_product(*m);
  if (!product || m->rows != m->cols) return -1;
  const int64_t units = m->rows, stride = units * batch;
  const int team = pick_threads(*m, batch, threads);
  const std::vector<int64_t> bounds = balanced_split(*m, team);
#pragma omp parallel num_threads(team)
  {
    const int id = omp_get_thread_num();
    const int64_t r0 = std::min(bounds[id] * m->block_rows, units);
    const int64_t r1 = std::min(bounds[id + 1] * m->block_rows, units);
    for (int64_t t = 0; t < steps; ++t) {
      float* h = hidden + t * stride;
      const float* in = inputs + t * stride;
      if (t > 0) product(*m, bounds[id], bounds[id + 1], h - stride, batch, batch, h, batch);
      for (int64_t i = r0 * batch; i < r1 * batch; ++i) {
        h[i] = std::min(std::max(in[i] + (t > 0 ? h[i] : 0.f), 0.f), clip);
      }
#pragma omp barrier
    }
  }
  return 0;
}

// GRU recurrence as torch's nn.GRU (gates r, z, n): with gh = U h_{t-1} + b_hh,
// r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n), h_t = (1 - z) n + z h_{t-1}.
// U is block-diagonal over D directions: rows (D, 3, H), columns (D, H). gi (steps, D*3*H, batch) holds
// W_ih x + b_ih; bias_hh (D*3*H,); gh is scratch (D*3*H, batch); hidden (steps, D*H, batch).
int32_t sds2_gru_recurrence(const Matrix* m, const float* gi, const float* bias_hh, int64_t steps, int64_t batch,
                            int64_t directions, float* gh, float* hidden, int32_t threads) {
  const ProductFn product = pick_product(*m);
  if (!product || directions < 1 || m->rows != 3 * m->cols || m->cols % directions) return -1;
  const int64_t units = m->cols, rows = m->rows, hidden_size = units / directions;
  const int team = pick_threads(*m, batch, threads);
  const std::vector<int64_t> bounds = balanced_split(*m, team);
#pragma omp parallel num_threads(team)
  {
    const int id = omp_get_thread_num();
    const int64_t u0 = units * id / team, u1 = units * (id + 1) / team;
    for (int64_t t = 0; t < steps; ++t) {
      float* h = hidden + t * units * batch;
      const float* h_prev = h - units * batch;
      const float* g = gi + t * rows * batch;
      if (t > 0) product(*m, bounds[id], bounds[id + 1], h_prev, batch, batch, gh, batch);
#pragma omp barrier
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t rr = (u / hidden_size) * 3 * hidden_size + u % hidden_size;
        const int64_t rz = rr + hidden_size, rn = rz + hidden_size;
        for (int64_t j = 0; j < batch; ++j) {
          const float prev = t > 0 ? h_prev[u * batch + j] : 0.f;
          const float ghr = (t > 0 ? gh[rr * batch + j] : 0.f) + bias_hh[rr];
          const float ghz = (t > 0 ? gh[rz * batch + j] : 0.f) + bias_hh[rz];
          const float ghn = (t > 0 ? gh[rn * batch + j] : 0.f) + bias_hh[rn];
          const float r = 1.f / (1.f + std::exp(-(g[rr * batch + j] + ghr)));
          const float z = 1.f / (1.f + std::exp(-(g[rz * batch + j] + ghz)));
          const float n = std::tanh(g[rn * batch + j] + r * ghn);
          h[u * batch + j] = (1.f - z) * n + z * prev;
        }
      }
#pragma omp barrier
    }
  }
  return 0;
}

}  // extern "C"
