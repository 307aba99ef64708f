// wattbench hand-written tensor-core GEMM: C = A @ B, all row-major.
//
//   A (M, K), B (K, N), C (M, N); fp16 or bf16 in and out, fp32 accumulation.
//   Entry points (extern "C", one per dtype and path):
//     wb_gemm_{fp16,bf16}_aligned    fast path: cp.async 16-byte copies. Requires K % 8 == 0,
//                                    N % 8 == 0 and 16-byte aligned A, B and C (checked by the
//                                    host; see cupy_matmul.py), so every 16-byte chunk of a row is
//                                    either wholly inside the matrix or wholly outside it.
//     wb_gemm_{fp16,bf16}_unaligned  any M, N, K >= 1 and any 2-byte alignment: the same tiles
//                                    and pipeline, filled by guarded 2-byte loads.
//   Arguments: (const u16* A, const u16* B, u16* C, int M, int N, int K); launch with a 1-D grid
//   of ceil(M / BM) * ceil(N / BN) blocks of wb::THREADS (256) threads and wb::SMEM_BYTES
//   (156672) bytes of dynamic shared memory.
//
// Tile design (defaults; each WB_GEMM_* macro can be overridden with -D, static_asserts below
// check a combination):
//   block tile BM x BN x BK = 128 x 256 x 64, 8 warps as 2 (M) x 4 (N), warp tile 64 x 64.
//   A warp tile of 64 x 64 is 4 x 8 mma.sync.m16n8k16 per 16-deep k step: 32 MMAs (65536 MACs)
//   fed by 8 ldmatrix.x4 (4 KiB), which keeps shared-memory reads (128 B/clk/SM on sm_80 and
//   sm_90) well below the tensor-core rate; a 64 x 32 warp tile reads 1.5x as many bytes per MAC
//   and, with the cp.async writes, reaches the shared-memory limit at full MMA rate. The
//   128 x 256 block tile loads (128 + 256) * 2 B of global memory per 32768 MACs per k: 3/4 of
//   the traffic per MAC of 128 x 128. Registers: 128 fp32 accumulators + 2 x 32 fragment
//   registers (the next k step's fragments load while the current one computes), within 255
//   for one 256-thread block per SM (__launch_bounds__(256, 1)); ptxas reports 232-240 registers
//   (nvcc 13.0; NVRTC 13.5 with CuPy's options) and no spills on sm_80 and sm_90
//   (tests/kernels/test_cuda_sources.py).
//   Pipeline: WB_GEMM_STAGES = 3 shared-memory stages filled by cp.async (16 B, .cg: L2 only),
//   one commit group per k tile, cp.async.wait_group(STAGES - 2) and one __syncthreads per
//   k tile: with BK = 64 a warp issues 4 k steps x 32 = 128 MMAs per barrier (64 with BK = 32).
//   Shared memory: STAGES * (BM * (BK + 8) + BK * (BN + 8)) * 2 B = 3 * 52224 B = 153 KiB: over
//   the 48 KiB default (the host raises the limit), within the 163 KiB of sm_80 and the 227 KiB
//   of sm_90 (a fourth stage would not fit sm_80).
//   Bank conflicts: rows are padded by 8 elements (16 B). A rows are 144 B (9 x 16 B) apart and
//   B rows 528 B (33 x 16 B) apart; both strides are odd in 16-byte units, so the 8 row
//   addresses of every ldmatrix 8 x 8 matrix fall in the 8 distinct 16-byte bank groups of a
//   128-byte wavefront: conflict-free reads.
//   Block order: blocks are walked in groups of GROUP_M block rows (column by column inside a
//   group), so blocks resident together share A and B panels in L2.
//
// Primitives: cp.async, ldmatrix, mma.sync and the fp32 -> 16-bit conversions are kernels/ptx.cuh's
// (16-bit values are raw bit patterns, u16, converted only by PTX); every build puts that folder on
// the include path (nvcc and NVRTC through CuPy, -std=c++17). The host emulator
// (tests/kernels/gemm_emulator.cpp) supplies them on the CPU. Needs sm_80 or newer.

#include "ptx.cuh"

#ifndef WB_GEMM_BM
#define WB_GEMM_BM 128
#endif
#ifndef WB_GEMM_BN
#define WB_GEMM_BN 256
#endif
#ifndef WB_GEMM_BK
#define WB_GEMM_BK 64
#endif
#ifndef WB_GEMM_WARPS_M
#define WB_GEMM_WARPS_M 2
#endif
#ifndef WB_GEMM_WARPS_N
#define WB_GEMM_WARPS_N 4
#endif
#ifndef WB_GEMM_STAGES
#define WB_GEMM_STAGES 3
#endif
#ifndef WB_GEMM_GROUP_M
#define WB_GEMM_GROUP_M 8
#endif

namespace wb {

constexpr int BM = WB_GEMM_BM;  // block tile rows (of A and C)
constexpr int BN = WB_GEMM_BN;  // block tile columns (of B and C)
constexpr int BK = WB_GEMM_BK;  // depth of one k tile (one pipeline stage)
constexpr int WARPS_M = WB_GEMM_WARPS_M;
constexpr int WARPS_N = WB_GEMM_WARPS_N;
constexpr int STAGES = WB_GEMM_STAGES;
constexpr int GROUP_M = WB_GEMM_GROUP_M;

constexpr int THREADS = 32 * WARPS_M * WARPS_N;
constexpr int WM = BM / WARPS_M;  // warp tile rows
constexpr int WN = BN / WARPS_N;  // warp tile columns
constexpr int MT = WM / 16;       // m16 MMA tiles per warp
constexpr int NT = WN / 8;        // n8 MMA tiles per warp
constexpr int KSTEPS = BK / 16;   // k16 MMA steps per k tile
constexpr int PAD = 8;            // row padding, elements (16 B)
constexpr int A_LD = BK + PAD;    // shared A row pitch, elements
constexpr int B_LD = BN + PAD;    // shared B row pitch, elements
constexpr int A_STAGE = BM * A_LD;  // elements per stage
constexpr int B_STAGE = BK * B_LD;
constexpr int SMEM_BYTES = STAGES * (A_STAGE + B_STAGE) * 2;
constexpr int A_CHUNKS = BM * BK / 8;  // 16-byte chunks per A tile
constexpr int B_CHUNKS = BK * BN / 8;

static_assert(BM % (16 * WARPS_M) == 0, "warp tile rows must be a multiple of 16");
static_assert(BN % (16 * WARPS_N) == 0, "warp tile columns must be a multiple of 16 (ldmatrix.x4.trans)");
static_assert(BK % 16 == 0, "BK must be a multiple of the MMA depth 16");
static_assert(STAGES >= 3, "the pipeline overwrites the stage read one k tile earlier: needs >= 3");
static_assert(A_CHUNKS % THREADS == 0 && B_CHUNKS % THREADS == 0, "16-byte copies must split evenly");
static_assert((BM * BK) % THREADS == 0 && (BK * BN) % THREADS == 0, "2-byte copies must split evenly");
static_assert(GROUP_M >= 1, "GROUP_M must be positive");
static_assert(SMEM_BYTES <= 227 * 1024, "over the 227 KiB of shared memory a block may have (sm_90)");

// Copies k tiles of A and B into shared stages. Elements outside the matrices are written as
// zeros, so edge tiles need no other guard in the MMA loop. Built once per block: the per-tile
// work is pointer arithmetic and predicates.
template <bool ALIGNED>
struct TileLoader;

// K % 8 == 0, N % 8 == 0, 16-byte aligned A and B: each thread copies fixed 16-byte chunks, so
// a chunk is wholly in or wholly out of bounds (src-size 0 zero-fills it).
template <>
struct TileLoader<true> {
  static constexpr int A_CPR = BK / 8;              // chunks per A tile row
  static constexpr int B_CPR = BN / 8;              // chunks per B tile row
  static constexpr int A_STEP = THREADS / A_CPR;    // rows between one thread's A chunks
  static constexpr int B_STEP = THREADS / B_CPR;    // rows between one thread's B chunks
  static_assert(THREADS % A_CPR == 0 && THREADS % B_CPR == 0, "chunk rows must split evenly");

  const u16* a;  // this thread's first A chunk in k tile 0: &A[m0 + a_row][a_col]
  const u16* b;  // this thread's first B chunk in k tile 0: &B[b_row][n0 + b_col]
  const u16* a_base;
  const u16* b_base;
  i64 a_step;    // elements between this thread's A chunks (A_STEP rows)
  i64 b_step;    // elements between this thread's B chunks (B_STEP rows)
  u32 a_dst;     // shared byte address of the first A chunk, stage 0
  u32 b_dst;
  int a_rows;    // rows of A left from this thread's first row (M - m0 - a_row)
  int a_col;     // k of this thread's A chunks within a tile
  int b_row;     // k of this thread's first B chunk within a tile
  bool b_col_ok;

  __device__ __forceinline__ TileLoader(const u16* A, const u16* B, int M, int N, int K, int m0,
                                        int n0, int tid, u32 sA, u32 sB) {
    const int a_row = tid / A_CPR;
    a_col = (tid % A_CPR) * 8;
    b_row = tid / B_CPR;
    const int b_col = (tid % B_CPR) * 8;
    a_rows = M - m0 - a_row;
    b_col_ok = n0 + b_col < N;
    a_base = A;
    b_base = B;
    a = A + (i64)(m0 + a_row) * K + a_col;
    b = B + (i64)b_row * N + n0 + b_col;
    a_step = (i64)A_STEP * K;
    b_step = (i64)B_STEP * N;
    a_dst = sA + (a_row * A_LD + a_col) * 2;
    b_dst = sB + (b_row * B_LD + b_col) * 2;
  }

  __device__ __forceinline__ void load(int kt, int stage, int K, int N) const {
    const int k0 = kt * BK;
    const bool a_k_ok = k0 + a_col < K;
    const u16* a_src = a + k0;
#pragma unroll
    for (int i = 0; i < A_CHUNKS / THREADS; ++i) {
      const bool ok = a_k_ok && i * A_STEP < a_rows;
      cp_async<16, true>(a_dst + stage * (A_STAGE * 2) + i * (A_STEP * A_LD * 2),
                         ok ? a_src + i * a_step : a_base, ok ? 16 : 0);
    }
    const u16* b_src = b + (i64)k0 * N;
#pragma unroll
    for (int i = 0; i < B_CHUNKS / THREADS; ++i) {
      const bool ok = b_col_ok && k0 + b_row + i * B_STEP < K;
      cp_async<16, true>(b_dst + stage * (B_STAGE * 2) + i * (B_STEP * B_LD * 2),
                         ok ? b_src + i * b_step : b_base, ok ? 16 : 0);
    }
  }
};

// Any shape and alignment: guarded 2-byte loads, consecutive threads on consecutive elements of
// a row (coalesced); the shared stores complete before the barrier that precedes their reads.
template <>
struct TileLoader<false> {
  const u16* A;
  const u16* B;
  int M, m0, n0;

  __device__ __forceinline__ TileLoader(const u16* A_, const u16* B_, int M_, int, int, int m0_,
                                        int n0_, int, u32, u32)
      : A(A_), B(B_), M(M_), m0(m0_), n0(n0_) {}

  __device__ __forceinline__ void load(int kt, int stage, int K, int N) const {
    const unsigned tid = threadIdx.x;
    u16* sA = dynamic_smem<u16>() + stage * A_STAGE;
    u16* sB = dynamic_smem<u16>() + STAGES * A_STAGE + stage * B_STAGE;
    const int k0 = kt * BK;
#pragma unroll 4
    for (unsigned i = 0; i < BM * BK / THREADS; ++i) {
      const unsigned e = tid + i * THREADS;
      const int r = e / BK, k = e % BK;
      const int gm = m0 + r, gk = k0 + k;
      sA[r * A_LD + k] = (gm < M && gk < K) ? A[(i64)gm * K + gk] : (u16)0;
    }
#pragma unroll 4
    for (unsigned i = 0; i < BK * BN / THREADS; ++i) {
      const unsigned e = tid + i * THREADS;
      const int r = e / BN, n = e % BN;
      const int gk = k0 + r, gn = n0 + n;
      sB[r * B_LD + n] = (gk < K && gn < N) ? B[(i64)gk * N + gn] : (u16)0;
    }
  }
};

// One block computes the BM x BN tile of C selected by blockIdx.x (grouped order).
template <bool BF16, bool ALIGNED>
__device__ __forceinline__ void gemm(const u16* __restrict__ A, const u16* __restrict__ B,
                                     u16* __restrict__ C, int M, int N, int K) {
  int m0, n0;
  grouped_tile<BM, BN, GROUP_M>(blockIdx.x, M, N, m0, n0);

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wm = warp / WARPS_N;
  const int wn = warp % WARPS_N;

  // ldmatrix row addresses (bytes, stage 0, k step 0). Lanes 0-15 address rows 0-15 of the
  // 16 x 16 source at column 0, lanes 16-31 the same rows at column 8; the four 8 x 8 matrices
  // then land in the registers in mma fragment order: A {a0, a1, a2, a3}; B (.trans, k-major
  // rows) {b0, b1} of n8 tile 2j and {b0, b1} of n8 tile 2j + 1.
  const u32 sA0 = smem_addr(dynamic_smem<u16>());
  const u32 sB0 = sA0 + STAGES * A_STAGE * 2;
  const u32 a_lane = ((wm * WM + (lane & 15)) * A_LD + (lane >> 4) * 8) * 2;
  const u32 b_lane = ((lane & 15) * B_LD + wn * WN + (lane >> 4) * 8) * 2;

  u32 af[2][MT][4];  // A fragments, double-buffered over k steps
  u32 bf[2][NT][2];  // B fragments
  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.0f;

  auto load_frags = [&](int buf, int stage, int ks) {
    const u32 a_base = sA0 + stage * (A_STAGE * 2) + a_lane + ks * 32;
    const u32 b_base = sB0 + stage * (B_STAGE * 2) + b_lane + ks * (16 * B_LD * 2);
#pragma unroll
    for (int i = 0; i < MT; ++i) ldmatrix_x4(af[buf][i], a_base + i * (16 * A_LD * 2));
#pragma unroll
    for (int j = 0; j < NT / 2; ++j) {
      u32 r[4];
      ldmatrix_x4_trans(r, b_base + j * 32);
      bf[buf][2 * j][0] = r[0];
      bf[buf][2 * j][1] = r[1];
      bf[buf][2 * j + 1][0] = r[2];
      bf[buf][2 * j + 1][1] = r[3];
    }
  };

  const int ktiles = (K + BK - 1) / BK;
  const TileLoader<ALIGNED> loader(A, B, M, N, K, m0, n0, tid, sA0, sB0);

  // Prologue: k tiles 0 .. STAGES-2 in flight, one commit group each (empty past the end, so
  // that wait_group counts stay uniform).
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) loader.load(s, s, K, N);
    cp_async_commit();
  }
  cp_async_wait<STAGES - 2>();  // tile 0 has landed (this thread's copies) ...
  __syncthreads();              // ... and everyone's
  int read_stage = 0;
  int write_stage = STAGES - 1;
  load_frags(0, 0, 0);

  // Invariants at the top of iteration kt: stage kt % STAGES holds tile kt and is visible to all
  // threads; buffer 0 holds its k step 0 fragments; groups for tiles up to kt + STAGES - 2 are
  // committed.
  for (int kt = 0; kt < ktiles; ++kt) {
#pragma unroll
    for (int ks = 0; ks < KSTEPS; ++ks) {
      if (ks == KSTEPS - 1) {
        // Tile kt + 1 complete: STAGES - 2 younger groups may still be in flight. The barrier
        // also retires every warp's reads of the stage refilled below in iteration kt + 1.
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        read_stage = read_stage + 1 == STAGES ? 0 : read_stage + 1;
      }
      load_frags((ks + 1) & 1, read_stage, (ks + 1) % KSTEPS);
      if (ks == 0) {
        // Refill the stage that held tile kt - 1 (all reads of it ended before the last barrier).
        const int next = kt + STAGES - 1;
        if (next < ktiles) loader.load(next, write_stage, K, N);
        cp_async_commit();
        write_stage = write_stage + 1 == STAGES ? 0 : write_stage + 1;
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma16816<BF16>(acc[i][j], af[ks & 1][i], bf[ks & 1][j]);
    }
  }
  cp_async_wait<0>();

  // Epilogue: accumulator v of tile (i, j) is C[row + 8 * (v / 2), col + v % 2] with
  // row = m0 + wm*WM + 16i + lane/4, col = n0 + wn*WN + 8j + 2*(lane%4).
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wm * WM + i * 16 + (lane >> 2) + h * 8;
        if (row >= M) continue;
        u16* dst = C + (i64)row * N + col;
        const float x0 = acc[i][j][2 * h];
        const float x1 = acc[i][j][2 * h + 1];
        if constexpr (ALIGNED) {
          // N % 8 == 0 and col even: col < N implies col + 1 < N, and dst is 4-byte aligned.
          if (col < N) *reinterpret_cast<u32*>(dst) = pack2<BF16>(x0, x1);
        } else {
          if (col < N) dst[0] = to16<BF16>(x0);
          if (col + 1 < N) dst[1] = to16<BF16>(x1);
        }
      }
    }
  }
}

}  // namespace wb

#define WB_GEMM_ENTRY(name, bf16, aligned)                                                  \
  extern "C" __global__ void __launch_bounds__(wb::THREADS, 1)                              \
      name(const u16* __restrict__ a, const u16* __restrict__ b, u16* __restrict__ c, int m, \
           int n, int k) {                                                                  \
    wb::gemm<bf16, aligned>(a, b, c, m, n, k);                                              \
  }

WB_GEMM_ENTRY(wb_gemm_fp16_aligned, false, true)
WB_GEMM_ENTRY(wb_gemm_fp16_unaligned, false, false)
WB_GEMM_ENTRY(wb_gemm_bf16_aligned, true, true)
WB_GEMM_ENTRY(wb_gemm_bf16_unaligned, true, false)
