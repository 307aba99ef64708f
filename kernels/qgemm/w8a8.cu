// wattbench W8A8 int8 GEMM: C = (A @ Bt^T) * sa[m] * sb[n], exact int32 accumulation.
//
//   A (M, K) int8 row-major (activations), Bt (N, K) int8 row-major (the weight as a linear layer
//   stores it, i.e. B = Bt^T is K-contiguous), sa / sb float32 scales read at sa[m * sa_step] and
//   sb[n * sb_step] (step 1: per row / column; 0: one for the tensor), C (M, N) bf16 or fp16
//   row-major, rounded once from fp32 = float(acc) * sa * sb.
//   Requirements (checked by the host, cupy_qgemm.py): K % 16 == 0, A and Bt 16-byte aligned,
//   C 4-byte aligned, K <= 133143 (int32 cannot overflow). Any M, N >= 1.
//   Arguments: (const s8* A, const s8* Bt, const float* sa, const float* sb, u16* C,
//               int M, int N, int K, int sa_step, int sb_step)
//
// Entry points:
//   wb_w8a8_mma_{bf16,fp16}   sm_80+: mma.sync.m16n8k32 s8 tensor cores. 1-D grid of
//     ceil(M / BM) * ceil(N / BN) blocks (grouped order) of 256 threads, MMA_SMEM_BYTES (122880)
//     bytes of dynamic shared memory.
//   wb_w8a8_dp4a_{bf16,fp16}  any GPU without m16n8k32 (sm_75): dp4a, 64 x 64 tiles.
//     Grid (ceil(N / 64), ceil(M / 64)) of 256 threads, static shared memory.
//
// mma design (the gemm.cu scheme with 8-bit data): block tile BM x BN x BK = 128 x 256 x 64
// (bytes of k), 8 warps as 2 (M) x 4 (N), warp tile 64 x 64 = 4 x 8 m16n8k32 MMAs per 32-deep
// k step: 128 int32 accumulators + double-buffered fragments. An m16n8k32 s8 A fragment is
// byte-for-byte the m16n8k16 f16 A fragment (thread t of a quad holds bytes 4t .. 4t + 3 of rows
// g and g + 8, then the same 16 bytes further), so ldmatrix.x4 (b16) loads it from 16 rows x 32
// bytes; with Bt K-contiguous, B fragments are the same shape over n rows (no .trans). Shared
// rows are padded to 80 bytes: the 8 row addresses of an 8 x 16-byte ldmatrix matrix land in 8
// different 16-byte bank groups. Pipeline: 4 stages of cp.async 16-byte copies (.cg), one
// commit group per k tile, wait_group(STAGES - 2) and one __syncthreads per k tile. Shared
// memory: 4 * (128 + 256) * 80 = 122880 B (<= 163 KiB on sm_80, 227 KiB on sm_90).
//
// Primitives (cp.async, ldmatrix, mma.sync s8, dp4a, cvt): kernels/ptx.cuh. The host emulator
// (tests/kernels/qgemm_emulator.cpp) supplies them, so the rest of this file runs unchanged on the
// CPU in the tests.

#include "ptx.cuh"

namespace wq {

constexpr int BM = 128, BN = 256, BK = 64;  // BK in bytes (= int8 elements)
constexpr int WARPS_M = 2, WARPS_N = 4, STAGES = 4, GROUP_M = 8;
constexpr int THREADS = 32 * WARPS_M * WARPS_N;
constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
constexpr int MT = WM / 16, NT = WN / 8, KSTEPS = BK / 32;
constexpr int LD = BK + 16;  // shared row pitch, bytes
constexpr int A_STAGE = BM * LD, B_STAGE = BN * LD;
constexpr int MMA_SMEM_BYTES = STAGES * (A_STAGE + B_STAGE);
constexpr int CPR = BK / 16;             // 16-byte chunks per row of a k tile
constexpr int ROW_STEP = THREADS / CPR;  // rows between one thread's chunks
static_assert(NT % 2 == 0 && MT >= 1, "B fragments load two n8 tiles at a time");
static_assert(BK % 32 == 0 && STAGES >= 3, "k tile: whole k32 steps; pipeline needs 3 stages");
static_assert(BM % ROW_STEP == 0 && BN % ROW_STEP == 0, "chunk copies must split evenly");
static_assert(MMA_SMEM_BYTES <= 163 * 1024, "shared memory over the sm_80 limit");

// Writes C[row][col] and C[row][col + 1] (when in bounds); one 4-byte store when N is even.
template <bool BF16>
__device__ __forceinline__ void store2(u16* C, int M, int N, int row, int col, float x0,
                                       float x1) {
  if (row >= M || col >= N) return;
  u16* dst = C + (i64)row * N + col;
  const u16 lo = to16<BF16>(x0), hi = to16<BF16>(x1);
  if ((N & 1) == 0) {  // col even, N even: col + 1 < N and dst is 4-byte aligned
    *reinterpret_cast<u32*>(dst) = (u32)lo | ((u32)hi << 16);
  } else {
    dst[0] = lo;
    if (col + 1 < N) dst[1] = hi;
  }
}

// ---- mma.sync path --------------------------------------------------------------------------

template <bool BF16>
__device__ __forceinline__ void gemm_mma(const s8* __restrict__ A, const s8* __restrict__ Bt,
                                         const float* __restrict__ sa,
                                         const float* __restrict__ sb, u16* __restrict__ C,
                                         int M, int N, int K, int sa_step, int sb_step) {
  int m0, n0;
  grouped_tile<BM, BN, GROUP_M>(blockIdx.x, M, N, m0, n0);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  const u32 sA0 = smem_addr(dynamic_smem<unsigned char>());
  const u32 sB0 = sA0 + STAGES * A_STAGE;

  // Copy plan: thread tid copies chunk (tid % CPR) of rows tid / CPR + i * ROW_STEP.
  const int c_row = tid / CPR, c_col = (tid % CPR) * 16;
  const s8* a_src = A + (i64)(m0 + c_row) * K + c_col;
  const s8* b_src = Bt + (i64)(n0 + c_row) * K + c_col;
  const u32 a_dst = sA0 + c_row * LD + c_col, b_dst = sB0 + c_row * LD + c_col;
  auto load_tile = [&](int kt, int stage) {
    const int k0 = kt * BK;
    const bool k_ok = k0 + c_col < K;  // K % 16 == 0: a chunk is wholly in or out
#pragma unroll
    for (int i = 0; i < BM / ROW_STEP; ++i) {
      const bool ok = k_ok && m0 + c_row + i * ROW_STEP < M;
      cp_async<16>(a_dst + stage * A_STAGE + i * ROW_STEP * LD,
                   ok ? (const void*)(a_src + (i64)i * ROW_STEP * K + k0) : (const void*)A,
                   ok ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < BN / ROW_STEP; ++i) {
      const bool ok = k_ok && n0 + c_row + i * ROW_STEP < N;
      cp_async<16>(b_dst + stage * B_STAGE + i * ROW_STEP * LD,
                   ok ? (const void*)(b_src + (i64)i * ROW_STEP * K + k0) : (const void*)Bt,
                   ok ? 16 : 0);
    }
  };

  // ldmatrix lane addresses (stage 0, k step 0). A: lanes 0-15 rows 0-15 at byte 0, lanes
  // 16-31 the same rows at byte 16 -> {a0, a1, a2, a3}. B (n rows): lanes 0-7 rows 0-7 byte 0,
  // 8-15 rows 0-7 byte 16, 16-23 rows 8-15 byte 0, 24-31 rows 8-15 byte 16 -> {b0, b1} of
  // n8 tile 2j and {b0, b1} of n8 tile 2j + 1.
  const u32 a_lane = (wm * WM + (lane & 15)) * LD + (lane >> 4) * 16;
  const u32 b_lane = (wn * WN + (lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 16;

  u32 af[2][MT][4];
  u32 bf[2][NT][2];
  int acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0;

  auto load_frags = [&](int buf, int stage, int ks) {
    const u32 a_base = sA0 + stage * A_STAGE + a_lane + ks * 32;
    const u32 b_base = sB0 + stage * B_STAGE + b_lane + ks * 32;
#pragma unroll
    for (int i = 0; i < MT; ++i) ldmatrix_x4(af[buf][i], a_base + i * 16 * LD);
#pragma unroll
    for (int j = 0; j < NT / 2; ++j) {
      u32 r[4];
      ldmatrix_x4(r, b_base + j * 16 * LD);
      bf[buf][2 * j][0] = r[0];
      bf[buf][2 * j][1] = r[1];
      bf[buf][2 * j + 1][0] = r[2];
      bf[buf][2 * j + 1][1] = r[3];
    }
  };

  const int ktiles = (K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_tile(s, s);
    cp_async_commit();
  }
  cp_async_wait<STAGES - 2>();
  __syncthreads();
  int read_stage = 0, write_stage = STAGES - 1;
  load_frags(0, 0, 0);

  // Top of iteration kt: stage kt % STAGES holds tile kt, visible to all threads; fragment
  // buffer 0 holds its k step 0; groups for tiles up to kt + STAGES - 2 are committed.
  for (int kt = 0; kt < ktiles; ++kt) {
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
      if (ks == KSTEPS - 1) {
        cp_async_wait<STAGES - 2>();  // tile kt + 1 landed (this thread's copies) ...
        __syncthreads();              // ... everyone's, and every read of tile kt - 1 is done
        read_stage = read_stage + 1 == STAGES ? 0 : read_stage + 1;
      }
      load_frags((ks + 1) & 1, read_stage, (ks + 1) % KSTEPS);
      if (ks == 0) {
        const int next = kt + STAGES - 1;  // refill the stage that held tile kt - 1
        if (next < ktiles) load_tile(next, write_stage);
        cp_async_commit();
        write_stage = write_stage + 1 == STAGES ? 0 : write_stage + 1;
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma_s8(acc[i][j], af[ks & 1][i], bf[ks & 1][j]);
    }
  }
  cp_async_wait<0>();

  // Epilogue: accumulator v of tile (i, j) is C[row + 8 * (v / 2)][col + v % 2] with
  // row = m0 + wm*WM + 16i + lane/4, col = n0 + wn*WN + 8j + 2*(lane%4).
  float sbv[NT][2];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2;
    sbv[j][0] = col < N ? sb[(i64)col * sb_step] : 0.0f;
    sbv[j][1] = col + 1 < N ? sb[(i64)(col + 1) * sb_step] : 0.0f;
  }
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm * WM + i * 16 + (lane >> 2) + h * 8;
      const float sav = row < M ? sa[(i64)row * sa_step] : 0.0f;
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2;
        store2<BF16>(C, M, N, row, col, (float)acc[i][j][2 * h] * sav * sbv[j][0],
                     (float)acc[i][j][2 * h + 1] * sav * sbv[j][1]);
      }
    }
  }
}

// ---- dp4a path ------------------------------------------------------------------------------

constexpr int DT = 64;       // dp4a block tile (rows and columns)
constexpr int DK = 64;       // k bytes per tile = 16 words
constexpr int DW = DK / 4;   // 32-bit words per tile row
constexpr int DLD = DW + 1;  // padded pitch (words): conflict-free column reads

template <bool BF16>
__device__ __forceinline__ void gemm_dp4a(const s8* __restrict__ A, const s8* __restrict__ Bt,
                                          const float* __restrict__ sa,
                                          const float* __restrict__ sb, u16* __restrict__ C,
                                          int M, int N, int K, int sa_step, int sb_step) {
  __shared__ int sA[DT][DLD];
  __shared__ int sB[DT][DLD];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;  // 16 x 16 threads, 4 x 4 outputs each
  const int m0 = blockIdx.y * DT, n0 = blockIdx.x * DT;
  int acc[4][4] = {};
  const int* A32 = reinterpret_cast<const int*>(A);
  const int* B32 = reinterpret_cast<const int*>(Bt);
  const int kw = K / 4;  // words per row (K % 16 == 0)
  for (int k0 = 0; k0 < kw; k0 += DW) {
    // 64 rows x 16 words per operand = 1024 words: 4 per thread, consecutive threads on
    // consecutive words of a row (coalesced).
#pragma unroll
    for (int i = 0; i < DT * DW / 256; ++i) {
      const int e = threadIdx.x + i * 256, r = e / DW, w = e % DW;
      const bool k_ok = k0 + w < kw;
      sA[r][w] = (k_ok && m0 + r < M) ? A32[(i64)(m0 + r) * kw + k0 + w] : 0;
      sB[r][w] = (k_ok && n0 + r < N) ? B32[(i64)(n0 + r) * kw + k0 + w] : 0;
    }
    __syncthreads();
#pragma unroll 4
    for (int w = 0; w < DW; ++w) {
      int a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sA[ty + 16 * i][w];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = sB[tx + 16 * j][w];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = dp4a(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = m0 + ty + 16 * i;
    if (row >= M) continue;
    const float sav = sa[(i64)row * sa_step];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = n0 + tx + 16 * j;
      if (col < N) C[(i64)row * N + col] = to16<BF16>((float)acc[i][j] * sav * sb[(i64)col * sb_step]);
    }
  }
}

}  // namespace wq

#define WQ_ARGS                                                                            \
  const s8 *__restrict__ a, const s8 *__restrict__ bt, const float *__restrict__ sa,       \
      const float *__restrict__ sb, u16 *__restrict__ c, int m, int n, int k, int sa_step, \
      int sb_step

// The mma entries hold no code below sm_80 (cp.async and m16n8k32 need it): NVRTC can then
// build this file for an older GPU, where the host launches the dp4a entries.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define WQ_MMA_BODY(bf16) wq::gemm_mma<bf16>(a, bt, sa, sb, c, m, n, k, sa_step, sb_step);
#else
#define WQ_MMA_BODY(bf16) __trap();
#endif
#define WQ_MMA_ENTRY(name, bf16)                                                         \
  extern "C" __global__ void __launch_bounds__(wq::THREADS, 1) name(WQ_ARGS) {           \
    WQ_MMA_BODY(bf16)                                                                    \
  }
#define WQ_DP4A_ENTRY(name, bf16)                                                        \
  extern "C" __global__ void __launch_bounds__(256) name(WQ_ARGS) {                      \
    wq::gemm_dp4a<bf16>(a, bt, sa, sb, c, m, n, k, sa_step, sb_step);                    \
  }

WQ_MMA_ENTRY(wb_w8a8_mma_bf16, true)
WQ_MMA_ENTRY(wb_w8a8_mma_fp16, false)
WQ_DP4A_ENTRY(wb_w8a8_dp4a_bf16, true)
WQ_DP4A_ENTRY(wb_w8a8_dp4a_fp16, false)
