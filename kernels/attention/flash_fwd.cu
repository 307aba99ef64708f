// wattbench hand-written FlashAttention-2 forward (prefill) on tensor cores.
//
//   q, o [B, HQ, N, D]; k, v [B, HKV, N, D]: contiguous, fp16 or bf16, 16-byte aligned; HQ a
//   multiple of HKV (query head h reads KV head h / (HQ / HKV)); D = 64 or 128; any N >= 1.
//   lse [B, HQ, N] float32 (natural log of each row's sum of exp(scaled scores)), or null.
//   Entry points (extern "C"): wb_flash_fwd_{fp16,bf16}_d{64,128}_{causal,full}, arguments
//     (const u16* q, const u16* k, const u16* v, u16* o, float* lse, int N, int HQ, int HKV,
//      float scale_log2)
//   with scale_log2 = softmax scale * log2(e) > 0. Launch: grid (ceil(N / 128), HQ, B) of
//   wbfa::THREADS (256) threads and wbfa::Tile<D>::SMEM_BYTES of dynamic shared memory
//   (D = 64: 55296 B, D = 128: 104448 B; over the 48 KiB default: the host opts in).
//
// Design (FlashAttention-2): a block owns BM = 128 query rows; each of its 8 warps owns 16 rows,
// so softmax statistics never leave a warp. The warp keeps its q rows as mma A fragments in
// registers (D / 16 k-steps x 4 registers), then streams BN = 64-key blocks of k and v:
//   S = q k^T     mma.sync.m16n8k16, A = q fragments, B = k rows by ldmatrix (k row-major is the
//                 "col" B operand), fp32 accumulators s[8][4];
//   online softmax in the log2 domain: m = running max of s * scale_log2, p = 2^(s*scale - m),
//                 l = running sum (per thread, reduced over the quad once at the end), the o
//                 accumulators rescaled by 2^(m_old - m_new);
//   O += P v      the S accumulators of two adjacent n8 tiles are exactly the A fragment of a
//                 k16 step (packed to 16 bits), v by ldmatrix.trans (row-major v).
//   Causal blocks stop at the diagonal (keys < min(N, m0 + 128)) and are launched last-block
//   first (the longest ones start first); only key blocks that cross the diagonal or N are
//   masked (-inf). Rows past N compute on zero-filled q and are not stored.
// Pipeline: k and v blocks are double-buffered in shared memory; the cp.async copies of block
//   j + 1 are issued right after the barrier that opens block j, so they overlap its math; one
//   barrier per block. Rows past N are zero-filled by cp.async (src-size 0): masked keys then
//   meet v = 0, never stale shared memory (0 * NaN would poison o).
// Registers: D = 128 keeps o 64 + s 32 + q fragments 32 per thread under __launch_bounds__
//   (256, 1); D = 64 re-reads its q fragments from shared memory at every key block (Q_IN_REGS
//   false) to fit the 128 registers of (256, 2), two blocks per SM. ptxas (nvcc 13.0, NVRTC 12.9
//   and 13.5): D = 128 208-212 registers, D = 64 124-127, no spills on sm_80 and sm_90
//   (tests/kernels/test_cuda_sources.py). Bank conflicts: shared
//   rows are padded by 8 elements (D = 128: 272 B = 17 x 16 B; D = 64: 144 B = 9 x 16 B), odd in
//   16-byte units, so the 8 rows of each ldmatrix 8x8 matrix hit 8 distinct bank groups.
//
// Primitives (cp.async, ldmatrix, mma.sync, cvt, ex2 / lg2): kernels/ptx.cuh; 16-bit values are
// raw bit patterns (u16) converted by PTX. The host emulator (tests/kernels/attention_emulator.cpp)
// supplies them on the CPU. Needs sm_80 or newer (cp.async, ldmatrix, bf16 mma).

#include "ptx.cuh"

namespace wbfa {

constexpr int BM = 128;       // query rows per block
constexpr int BN = 64;        // keys per k / v block
constexpr int WARPS = 8;      // 16 query rows each
constexpr int THREADS = 32 * WARPS;
constexpr int PAD = 8;        // shared row padding, elements (16 B)
constexpr float LN2 = 0.6931471805599453f;

static_assert(BM == 16 * WARPS, "each warp owns 16 query rows");
static_assert(BN % 16 == 0, "keys come in k16 steps of the P V product");

template <int D>
struct Tile {
  static_assert(D == 64 || D == 128, "head dim 64 or 128");
  static constexpr int LD = D + PAD;           // shared row pitch, elements
  static constexpr int Q_ELEMS = BM * LD;      // q tile
  static constexpr int KV_ELEMS = BN * LD;     // one k or v stage
  static constexpr int SMEM_BYTES = (Q_ELEMS + 4 * KV_ELEMS) * 2;  // q + 2 k + 2 v stages
  static constexpr int MIN_BLOCKS = D == 64 ? 2 : 1;               // blocks per SM (bounds)
  static constexpr bool Q_IN_REGS = D == 128;  // D = 64 re-reads q to fit 128 registers
};

// Copies ROWS rows of D elements (row stride D) from src into a shared tile at byte address
// dst (pitch LD); rows >= rows_left are zero-filled. src must point at a valid row 0.
template <int D, int ROWS>
__device__ __forceinline__ void load_tile(u32 dst, const u16* src, int rows_left, int tid) {
  constexpr int CPR = D / 8;  // 16-byte chunks per row
  constexpr int CHUNKS = ROWS * CPR;
  static_assert(CHUNKS % THREADS == 0, "chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < CHUNKS / THREADS; ++i) {
    const int c = tid + i * THREADS;
    const int r = c / CPR;
    const int col = (c % CPR) * 8;
    const bool ok = r < rows_left;
    cp_async<16>(dst + (r * Tile<D>::LD + col) * 2, ok ? src + (i64)r * D + col : src,
                 ok ? 16 : 0);
  }
}

template <bool BF16, int D, bool CAUSAL>
__device__ __forceinline__ void flash_fwd(const u16* __restrict__ Q, const u16* __restrict__ K,
                                          const u16* __restrict__ V, u16* __restrict__ O,
                                          float* __restrict__ LSE, int N, int HQ, int HKV,
                                          float scale_log2) {
  using T = Tile<D>;
  constexpr int LD = T::LD;
  constexpr int KSTEPS = D / 16;   // k16 steps of q k^T
  constexpr int STILES = BN / 8;   // n8 tiles of S
  constexpr int OTILES = D / 8;    // n8 tiles of o

  const int mb = CAUSAL ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int hk = h / (HQ / HKV);
  const int m0 = mb * BM;
  const i64 q_off = ((i64)b * HQ + h) * N * D;
  const i64 kv_off = ((i64)b * HKV + hk) * N * D;
  const u16* q = Q + q_off;
  const u16* k = K + kv_off;
  const u16* v = V + kv_off;

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const u32 sQ = smem_addr(dynamic_smem<u16>());
  const u32 sK = sQ + T::Q_ELEMS * 2;
  const u32 sV = sK + 2 * T::KV_ELEMS * 2;

  const int kv_end = CAUSAL ? min(N, m0 + BM) : N;  // keys this block needs
  const int n_blocks = (kv_end + BN - 1) / BN;

  // Prologue: q tile and key block 0, one group.
  load_tile<D, BM>(sQ, q + (i64)m0 * D, N - m0, tid);
  load_tile<D, BN>(sK, k, N, tid);
  load_tile<D, BN>(sV, v, N, tid);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // q fragments of this warp's 16 rows: lanes 0-15 address rows 0-15 at column 0, lanes 16-31
  // the same rows at column 8, giving {a0, a1, a2, a3} of each k16 step. Kept in registers
  // (Q_IN_REGS) or re-read from the q tile at every key block (D = 64: two blocks per SM).
  const u32 q_lane = sQ + ((warp * 16 + (lane & 15)) * LD + (lane >> 4) * 8) * 2;
  u32 qf[T::Q_IN_REGS ? KSTEPS : 1][4];
  if constexpr (T::Q_IN_REGS) {
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) ldmatrix_x4(qf[kk], q_lane + kk * 32);
  }

  float o[OTILES][4];
#pragma unroll
  for (int t = 0; t < OTILES; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[t][e] = 0.0f;
  float m_r[2] = {neg_inf(), neg_inf()};  // running max (log2 domain) of rows r, r + 8
  float l_r[2] = {0.0f, 0.0f};            // this thread's part of the running row sums

  // k (non-trans): matrices {keys 0-7, d 0-7}, {keys 0-7, d 8-15}, {keys 8-15, d 0-7},
  // {keys 8-15, d 8-15} -> b0, b1 of n8 tile 2jj and b0, b1 of tile 2jj + 1.
  const u32 k_lane = (((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8) * 2;
  // v (trans): rows = keys 0-15, columns d 0-7 / 8-15 -> b0, b1 of d tiles 2dp and 2dp + 1.
  const u32 v_lane = ((lane & 15) * LD + (lane >> 4) * 8) * 2;
  const int row0 = m0 + warp * 16 + (lane >> 2);  // rows of this thread: row0, row0 + 8
  const int col_lane = (lane & 3) * 2;

  for (int j = 0; j < n_blocks; ++j) {
    const int stage = j & 1;
    cp_async_wait<0>();  // block j (this thread's copies) has landed ...
    __syncthreads();      // ... everyone's; and every warp is done with block j - 1's stage
    if (j + 1 < n_blocks) {
      const int n1 = (j + 1) * BN;
      load_tile<D, BN>(sK + (stage ^ 1) * T::KV_ELEMS * 2, k + (i64)n1 * D, N - n1, tid);
      load_tile<D, BN>(sV + (stage ^ 1) * T::KV_ELEMS * 2, v + (i64)n1 * D, N - n1, tid);
    }
    cp_async_commit();

    // S = q k^T for this warp's 16 rows x BN keys
    float s[STILES][4];
#pragma unroll
    for (int t = 0; t < STILES; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[t][e] = 0.0f;
    const u32 kb = sK + stage * T::KV_ELEMS * 2 + k_lane;
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk) {
      const u32* a = qf[T::Q_IN_REGS ? kk : 0];
      if constexpr (!T::Q_IN_REGS) ldmatrix_x4(qf[0], q_lane + kk * 32);
#pragma unroll
      for (int jj = 0; jj < STILES / 2; ++jj) {
        u32 r[4];
        ldmatrix_x4(r, kb + (jj * 16 * LD + kk * 16) * 2);
        mma16816<BF16>(s[2 * jj], a, r);
        mma16816<BF16>(s[2 * jj + 1], a, r + 2);
      }
    }

    // masks: keys >= N, and (causal) keys after the row
    const int n0 = j * BN;
    if (n0 + BN > N || (CAUSAL && n0 + BN - 1 > m0)) {
#pragma unroll
      for (int t = 0; t < STILES; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = n0 + t * 8 + col_lane + (e & 1);
          const int row = row0 + (e >> 1) * 8;
          if (col >= N || (CAUSAL && col > row)) s[t][e] = neg_inf();
        }
    }

    // online softmax, rows row0 (e = 0, 1) and row0 + 8 (e = 2, 3)
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mx = neg_inf();
#pragma unroll
      for (int t = 0; t < STILES; ++t) mx = fmaxf(mx, fmaxf(s[t][2 * rr], s[t][2 * rr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the quad holds one row
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_r[rr], mx * scale_log2);
      const float m_use = m_new == neg_inf() ? 0.0f : m_new;  // no key yet: keep 0 * ...
      const float alpha = ex2(m_r[rr] - m_use);
      m_r[rr] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int t = 0; t < STILES; ++t)
#pragma unroll
        for (int e = 2 * rr; e < 2 * rr + 2; ++e) {
          const float p = ex2(s[t][e] * scale_log2 - m_use);
          s[t][e] = p;
          sum += p;
        }
      l_r[rr] = l_r[rr] * alpha + sum;
#pragma unroll
      for (int t = 0; t < OTILES; ++t) {
        o[t][2 * rr] *= alpha;
        o[t][2 * rr + 1] *= alpha;
      }
    }

    // O += P v: the S tiles 2kk, 2kk + 1 are the A fragment of key step kk
    const u32 vb = sV + stage * T::KV_ELEMS * 2 + v_lane;
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      u32 pa[4];
      pa[0] = pack2<BF16>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2<BF16>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        u32 r[4];
        ldmatrix_x4_trans(r, vb + (kk * 16 * LD + dp * 16) * 2);
        mma16816<BF16>(o[2 * dp], pa, r);
        mma16816<BF16>(o[2 * dp + 1], pa, r + 2);
      }
    }
  }
  cp_async_wait<0>();

  // Epilogue: o / l (l summed over the quad), rounded to 16 bits; lse in natural log.
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float l = l_r[rr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = row0 + rr * 8;
    if (row < N) {
      const float inv = 1.0f / l;
      u16* dst = O + q_off + (i64)row * D + col_lane;
#pragma unroll
      for (int t = 0; t < OTILES; ++t)
        *reinterpret_cast<u32*>(dst + t * 8) =
            pack2<BF16>(o[t][2 * rr] * inv, o[t][2 * rr + 1] * inv);
      if (LSE != nullptr && (lane & 3) == 0)
        LSE[((i64)b * HQ + h) * N + row] = (m_r[rr] + lg2(l)) * LN2;
    }
  }
}

}  // namespace wbfa

#define WB_FA_ENTRY(name, bf16, d, causal)                                                    \
  extern "C" __global__ void __launch_bounds__(wbfa::THREADS, wbfa::Tile<d>::MIN_BLOCKS)     \
      name(const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,   \
           u16* __restrict__ o, float* __restrict__ lse, int n, int hq, int hkv,              \
           float scale_log2) {                                                               \
    wbfa::flash_fwd<bf16, d, causal>(q, k, v, o, lse, n, hq, hkv, scale_log2);              \
  }

WB_FA_ENTRY(wb_flash_fwd_fp16_d64_causal, false, 64, true)
WB_FA_ENTRY(wb_flash_fwd_fp16_d64_full, false, 64, false)
WB_FA_ENTRY(wb_flash_fwd_fp16_d128_causal, false, 128, true)
WB_FA_ENTRY(wb_flash_fwd_fp16_d128_full, false, 128, false)
WB_FA_ENTRY(wb_flash_fwd_bf16_d64_causal, true, 64, true)
WB_FA_ENTRY(wb_flash_fwd_bf16_d64_full, true, 64, false)
WB_FA_ENTRY(wb_flash_fwd_bf16_d128_causal, true, 128, true)
WB_FA_ENTRY(wb_flash_fwd_bf16_d128_full, true, 128, false)
