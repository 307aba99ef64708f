// wattbench W4A16: C = X @ W with W int4-packed (kernels/qgemm/pack.py), sm_80+.
//
//   X (M, K) and C (M, N): fp16 or bf16, row-major. QW (K / 8, N) u32 words, row-major: word
//   (r, n) holds q[8r + e][n] in nibble NIBBLE_OF_OFFSET[e] = (0, 4, 1, 5, 2, 6, 3, 7)[e], so
//   (word >> 4i) & 0x000F000F holds the codes of k offsets 2i and 2i + 1 in its two halves.
//   S (K / G, N) scales in X's dtype, Z (K / G, N) u8 zero points; W = (q - Z) * S per group.
//   Requirements (checked by the host, cupy_qgemm.py): G % 32 == 0, K % G == 0, N % 4 == 0,
//   X and QW 16-byte aligned, S 8-byte, Z and C 4-byte aligned.
//
// Entry points:
//   wb_w4a16_gemv_{fp16,bf16}_m{1,2,4,8,16}  M <= 1, 2, 4, 8, 16: split-K GEMV.
//     (X, QW, S, Z, C, float* partial, u32* counters, int M, int N, int K, int G,
//      int chunks_per_split). Grid (ceil(N / 128), splits), 128 threads, static shared memory.
//     Block (b, s) owns columns [128 b, 128 b + 128) and k chunks (32 k = 4 word rows, inside
//     one group) [s * chunks_per_split, ...); its 4 warps take those chunks in turn. A lane owns
//     4 adjacent columns: one 16-byte streaming load (ld.global.cs) brings 4 words = 32 weights,
//     a warp reads 512 contiguous bytes of a word row. Dequantization is exact in fp32: a nibble
//     OR 0x4B000000 is the float 2^23 + q, and one add of -(2^23 + z) leaves q - z (three integer
//     / float ops per weight); the products with X (fp32) are summed per chunk and scaled once
//     per chunk. The 4 warps' sums meet in shared memory (fixed order). With one split the block
//     writes C; with more it writes fp32 partials (splits, M, N), and the last block of a column
//     band to arrive -- counters[b], a fenced acq_rel atomic -- adds them in split order
//     (deterministic), writes C and resets counters[b] to 0, so no launch needs a memset.
//   wb_w4a16_gemm_{fp16,bf16}  any M (the host uses it for M > 16): tiled mma.sync GEMM.
//     (X, QW, S, Z, C, int M, int N, int K, int G). 1-D grid of ceil(M / 128) * ceil(N / 128)
//     blocks (grouped order) of 256 threads, GEMM_SMEM_BYTES (50688) bytes of dynamic shared
//     memory. Block tile 128 x 128 x 32 (k): a k tile lies in one group. 8 warps as 2 (M) x 4
//     (N), warp tile 64 x 32 = 4 x 4 m16n8k16 MMAs per 16-deep k step. Each stage holds the X
//     tile (rows padded to 40 halves, ldmatrix), 4 rows of packed words, and the group's scales
//     and zeros, all copied with cp.async (4 stages, one commit group per k tile). B fragments
//     are dequantized in registers: thread t of a quad needs k = 2t, 2t + 1 (and + 8) of one
//     column, which is (word >> 4t) & 0x000F000F of two words; OR-ed with the fp16 (bf16) bits
//     of 1024 (128) it is 1024 + q exactly, minus 1024 + z exactly, times the scale rounded once
//     to the activation dtype: 2 shared loads and 8 integer / half2 ops per 4 weights, used by
//     4 MMAs.
//
// Primitives (cp.async, ldmatrix, mma.sync, streaming and read-only loads, half2 arithmetic, the
// split-K semaphore): kernels/ptx.cuh. The host emulator (tests/kernels/qgemm_emulator.cpp)
// supplies them, so the rest of this file runs unchanged on the CPU in the tests.

#include "ptx.cuh"

namespace w4 {

// ---- split-K GEMV (M <= 16) -------------------------------------------------------------------

constexpr int GEMV_WARPS = 4;
constexpr int GEMV_THREADS = 32 * GEMV_WARPS;
constexpr int GEMV_BN = 128;  // columns per block: 32 lanes x 4 words
constexpr int CHUNK_K = 32;   // k per chunk: 4 word rows (G % 32 == 0: inside one group)
constexpr u32 F32_2P23 = 0x4B000000u;  // 2^23: OR-ing a nibble into its mantissa adds it

template <bool BF16, int MT>
__device__ __forceinline__ void gemv(const u16* __restrict__ X, const u32* __restrict__ QW,
                                     const u16* __restrict__ S, const u8* __restrict__ Z,
                                     u16* __restrict__ C, float* __restrict__ partial,
                                     u32* __restrict__ counters, int M, int N, int K, int G,
                                     int chunks_per_split) {
  __shared__ float red[GEMV_WARPS][MT][GEMV_BN];
  __shared__ int is_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n0 = blockIdx.x * GEMV_BN;
  const int n = n0 + lane * 4;  // this lane's 4 columns; N % 4 == 0: all in or all out
  const int chunks = K / CHUNK_K;
  const int c_begin = blockIdx.y * chunks_per_split;
  const int c_end = min(chunks, c_begin + chunks_per_split);

  float acc[MT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[m][c] = 0.0f;

  if (n < N) {
    for (int ch = c_begin + warp; ch < c_end; ch += GEMV_WARPS) {
      u32 w[4][4];  // [word row][column]
#pragma unroll
      for (int r = 0; r < 4; ++r) ld_stream4(w[r], QW + (i64)(ch * 4 + r) * N + n);
      const i64 g_off = (i64)(ch * CHUNK_K / G) * N + n;
      u32 s2[2];
      ld_nc2(s2, S + g_off);
      const u32 z4 = ld_nc1(Z + g_off);
      float scale[4], zoff[4];
      to_float2<BF16>(s2[0], scale[0], scale[1]);
      to_float2<BF16>(s2[1], scale[2], scale[3]);
#pragma unroll
      for (int c = 0; c < 4; ++c) zoff[c] = -(8388608.0f + (float)((z4 >> (8 * c)) & 0xFFu));

      float part[MT][4];
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int c = 0; c < 4; ++c) part[m][c] = 0.0f;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        float d[4][8];  // q - z of column c at k offset e (k = 32 ch + 8 r + e)
#pragma unroll
        for (int c = 0; c < 4; ++c)
#pragma unroll
          for (int j = 0; j < 8; ++j)
            d[c][2 * (j % 4) + j / 4] = bits_f32(F32_2P23 | ((w[r][c] >> (4 * j)) & 0xFu)) + zoff[c];
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if (m < M) {
            u32 xv[4];
            ld_nc4(xv, X + (i64)m * K + ch * CHUNK_K + r * 8);
            float xf[8];
#pragma unroll
            for (int p = 0; p < 4; ++p) to_float2<BF16>(xv[p], xf[2 * p], xf[2 * p + 1]);
#pragma unroll
            for (int c = 0; c < 4; ++c)
#pragma unroll
              for (int e = 0; e < 8; ++e) part[m][c] += xf[e] * d[c][e];
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[m][c] += scale[c] * part[m][c];
    }
  }

  // The block's 4 warps, summed in warp order.
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int c = 0; c < 4; ++c) red[warp][m][lane * 4 + c] = acc[m][c];
  __syncthreads();
  const bool split = gridDim.y > 1;
  for (int idx = tid; idx < MT * GEMV_BN; idx += GEMV_THREADS) {
    const int m = idx / GEMV_BN, col = idx % GEMV_BN;
    if (m >= M || n0 + col >= N) continue;
    float v = 0.0f;
#pragma unroll
    for (int wi = 0; wi < GEMV_WARPS; ++wi) v += red[wi][m][col];
    if (split) {
      partial[((i64)blockIdx.y * M + m) * N + n0 + col] = v;
    } else {
      C[(i64)m * N + n0 + col] = to16<BF16>(v);
    }
  }
  if (!split) return;
  // Semaphore: every thread's partials are visible device-wide (fence) before thread 0 counts
  // the block in; the block that counts last reads all partials (after an acquire).
  fence_gpu();
  __syncthreads();
  if (tid == 0) is_last = atomic_inc_gpu(counters + blockIdx.x) == gridDim.y - 1;
  __syncthreads();
  if (!is_last) return;
  fence_gpu();
  for (int idx = tid; idx < MT * GEMV_BN; idx += GEMV_THREADS) {
    const int m = idx / GEMV_BN, col = n0 + idx % GEMV_BN;
    if (m >= M || col >= N) continue;
    float v = 0.0f;
    for (int s = 0; s < (int)gridDim.y; ++s) v += ld_cg(partial + ((i64)s * M + m) * N + col);
    C[(i64)m * N + col] = to16<BF16>(v);
  }
  if (tid == 0) st_relaxed_zero(counters + blockIdx.x);
}

// ---- tiled GEMM ---------------------------------------------------------------------------------

constexpr int BM = 128, BN = 128, BK = 32;
constexpr int WARPS_M = 2, WARPS_N = 4, STAGES = 4, GROUP_M = 8;
constexpr int THREADS = 32 * WARPS_M * WARPS_N;
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
constexpr int MT = WM / 16, NT = WN / 8;
constexpr int A_LD = BK + 8;                 // halves per shared X row
constexpr int A_BYTES = BM * A_LD * 2;       // 10240
constexpr int B_ROWS = BK / 8;               // word rows per k tile
constexpr int B_BYTES = B_ROWS * BN * 4;     // 2048
constexpr int S_BYTES = BN * 2, Z_BYTES = BN;
constexpr int STAGE_BYTES = A_BYTES + B_BYTES + S_BYTES + Z_BYTES;
constexpr int GEMM_SMEM_BYTES = STAGES * STAGE_BYTES;
static_assert(BK == 32, "a k tile must lie in one group (G % 32 == 0)");
static_assert(THREADS == 256 && BM * BK / 8 == 2 * THREADS, "X copy: 2 chunks per thread");
static_assert(B_ROWS * BN / 4 == 128 && BN / 4 == 32, "words, scales, zeros: 128 + 32 + 32 copies");
static_assert(GEMM_SMEM_BYTES == 50688, "documented in the header");

// Per column and k tile: the bits of (magic + z) in both halves (negated for bf16, which has no
// sub.bf16x2 on sm_80) and of the scale in both halves.
template <bool BF16>
struct Dequant {
  u32 zz;
  u32 ss;

  __device__ __forceinline__ Dequant(u32 z, u32 s_bits) {
    if constexpr (BF16) {
      zz = ((0x4300u | z) * 0x00010001u) ^ 0x80008000u;  // -(128 + z), exact
    } else {
      zz = (0x6400u | z) * 0x00010001u;  // 1024 + z, exact
    }
    ss = s_bits * 0x00010001u;
  }

  // v holds two codes in bits 0-3 and 16-19 (and junk above): -> ((q - z) * s) x 2.
  __device__ __forceinline__ u32 operator()(u32 v) const {
    if constexpr (BF16) {
      const u32 h = (v & 0x000F000Fu) | 0x43004300u;          // 128 + q
      const u32 d = fma_bf16x2(h, 0x3F803F80u, zz);            // * 1.0 - (128 + z): q - z
      return fma_bf16x2(d, ss, 0x80008000u);                   // * s + (-0.0)
    } else {
      const u32 h = (v & 0x000F000Fu) | 0x64006400u;          // 1024 + q
      return mul_f16x2(sub_f16x2(h, zz), ss);                  // (q - z) * s
    }
  }
};

template <bool BF16>
__device__ __forceinline__ void gemm(const u16* __restrict__ X, const u32* __restrict__ QW,
                                     const u16* __restrict__ S, const u8* __restrict__ Z,
                                     u16* __restrict__ C, int M, int N, int K, int G) {
  int m0, n0;
  grouped_tile<BM, BN, GROUP_M>(blockIdx.x, M, N, m0, n0);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const u32 s0 = smem_addr(dynamic_smem<unsigned char>());

  // Copy plan. X: rows tid / 4 and tid / 4 + 64, 16-byte chunk tid % 4 of the 64-byte k row.
  // Threads 0-127: word row tid / 32, chunk tid % 32 (4 words); 128-159: 4 scales (8 bytes);
  // 160-191: 4 zeros (4 bytes). N % 4 == 0: every chunk is wholly in or out of the matrix.
  const int x_row = tid / 4, x_col = (tid % 4) * 8;
  auto load_tile = [&](int kt, int stage) {
    const u32 base = s0 + stage * STAGE_BYTES;
    const int k0 = kt * BK;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = x_row + i * 64;
      const bool ok = m0 + row < M;
      cp_async<16>(base + (row * A_LD + x_col) * 2,
                   ok ? (const void*)(X + (i64)(m0 + row) * K + k0 + x_col) : (const void*)X,
                   ok ? 16 : 0);
    }
    if (tid < 128) {
      const int r = tid / 32, n = n0 + (tid % 32) * 4;
      const bool ok = n < N;
      cp_async<16>(base + A_BYTES + (r * BN + (tid % 32) * 4) * 4,
                   ok ? (const void*)(QW + (i64)(kt * B_ROWS + r) * N + n) : (const void*)QW,
                   ok ? 16 : 0);
    } else if (tid < 192) {
      const bool zeros = tid >= 160;
      const int c = (tid - (zeros ? 160 : 128)) * 4, n = n0 + c;
      const bool ok = n < N;
      const i64 g_off = (i64)(k0 / G) * N + n;
      if (zeros) {
        cp_async<4>(base + A_BYTES + B_BYTES + S_BYTES + c,
                    ok ? (const void*)(Z + g_off) : (const void*)Z, ok ? 4 : 0);
      } else {
        cp_async<8>(base + A_BYTES + B_BYTES + c * 2,
                    ok ? (const void*)(S + g_off) : (const void*)S, ok ? 8 : 0);
      }
    }
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.0f;

  // ldmatrix: lanes 0-15 rows 0-15 at k 0, lanes 16-31 the same rows at k 8 -> {a0..a3}.
  const u32 a_lane = ((wm * WM + (lane & 15)) * A_LD + (lane >> 4) * 8) * 2;
  const int b_col = wn * WN + (lane >> 2);  // + 8j: this thread's column in n8 tile j
  const int shift = 4 * (lane & 3);         // pair t = lane % 4: k offsets 2t, 2t + 1

  const int ktiles = K / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_tile(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // tile kt landed (this thread's copies) ...
    __syncthreads();              // ... everyone's; all reads of tile kt - 1 are done
    const int next = kt + STAGES - 1;
    if (next < ktiles) load_tile(next, next % STAGES);  // the stage tile kt - 1 used
    cp_async_commit();

    const int stage = kt % STAGES;
    const unsigned char* st = dynamic_smem<unsigned char>() + stage * STAGE_BYTES;
    const u32* sB = reinterpret_cast<const u32*>(st + A_BYTES);
    const u16* sS = reinterpret_cast<const u16*>(st + A_BYTES + B_BYTES);
    const u8* sZ = st + A_BYTES + B_BYTES + S_BYTES;
    const u32 a_base = s0 + stage * STAGE_BYTES + a_lane;
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      u32 af[MT][4];
#pragma unroll
      for (int i = 0; i < MT; ++i) ldmatrix_x4(af[i], a_base + (i * 16 * A_LD + ks * 16) * 2);
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int col = b_col + j * 8;
        const Dequant<BF16> dq(sZ[col], sS[col]);
        u32 b[2];
        b[0] = dq(sB[(2 * ks) * BN + col] >> shift);      // k = 16 ks + 2t, + 1
        b[1] = dq(sB[(2 * ks + 1) * BN + col] >> shift);  // k = 16 ks + 8 + 2t, + 1
#pragma unroll
        for (int i = 0; i < MT; ++i) mma16816<BF16>(acc[i][j], af[i], b);
      }
    }
  }
  cp_async_wait<0>();

  // Epilogue: accumulator v of tile (i, j) is C[row + 8 * (v / 2)][col + v % 2] with
  // row = m0 + wm*WM + 16i + lane/4, col = n0 + wn*WN + 8j + 2*(lane%4); N even: pair stores.
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm * WM + i * 16 + (lane >> 2) + h * 8;
        if (row < M && col < N) {
          *reinterpret_cast<u32*>(C + (i64)row * N + col) =
              pack2<BF16>(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
        }
      }
    }
  }
}

}  // namespace w4

#define W4_GEMV_ENTRY(name, bf16, mt)                                                          \
  extern "C" __global__ void __launch_bounds__(w4::GEMV_THREADS)                               \
      name(const u16* __restrict__ x, const u32* __restrict__ qw, const u16* __restrict__ s,  \
           const u8* __restrict__ z, u16* __restrict__ c, float* __restrict__ partial,        \
           u32* __restrict__ counters, int m, int n, int k, int g, int chunks_per_split) {     \
    w4::gemv<bf16, mt>(x, qw, s, z, c, partial, counters, m, n, k, g, chunks_per_split);      \
  }

#define W4_GEMM_ENTRY(name, bf16)                                                              \
  extern "C" __global__ void __launch_bounds__(w4::THREADS, 1)                                 \
      name(const u16* __restrict__ x, const u32* __restrict__ qw, const u16* __restrict__ s,  \
           const u8* __restrict__ z, u16* __restrict__ c, int m, int n, int k, int g) {        \
    w4::gemm<bf16>(x, qw, s, z, c, m, n, k, g);                                                \
  }

W4_GEMV_ENTRY(wb_w4a16_gemv_fp16_m1, false, 1)
W4_GEMV_ENTRY(wb_w4a16_gemv_fp16_m2, false, 2)
W4_GEMV_ENTRY(wb_w4a16_gemv_fp16_m4, false, 4)
W4_GEMV_ENTRY(wb_w4a16_gemv_fp16_m8, false, 8)
W4_GEMV_ENTRY(wb_w4a16_gemv_fp16_m16, false, 16)
W4_GEMV_ENTRY(wb_w4a16_gemv_bf16_m1, true, 1)
W4_GEMV_ENTRY(wb_w4a16_gemv_bf16_m2, true, 2)
W4_GEMV_ENTRY(wb_w4a16_gemv_bf16_m4, true, 4)
W4_GEMV_ENTRY(wb_w4a16_gemv_bf16_m8, true, 8)
W4_GEMV_ENTRY(wb_w4a16_gemv_bf16_m16, true, 16)
W4_GEMM_ENTRY(wb_w4a16_gemm_fp16, false)
W4_GEMM_ENTRY(wb_w4a16_gemm_bf16, true)
