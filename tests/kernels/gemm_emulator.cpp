// Host emulation of the hand-written GEMM (kernels/matmul/gemm.cu) for tests on machines without
// a GPU (tests/kernels/test_gemm_emulated.py builds it as a shared library, with the tiling
// macros it tests).
//
// The kernel source is compiled unchanged except for its device-primitive section (guarded by
// WB_EMULATE). The runtime (fibers for threads, block / warp barriers, cp.async queues with
// zero-fill that land only at cp.async.wait_group, poisoned shared memory, global-read checks,
// number formats, error codes) is warp_emulator.h; this file adds the GEMM's primitives, written
// from the PTX ISA's definitions (groupID g = lane / 4, t = lane % 4):
//   * ldmatrix and mma.sync are warp collectives (all 32 lanes, same kind);
//   * ldmatrix.x4 (.trans): lane 8i + r names row r of matrix i (16-byte aligned); lane T receives
//     the 16-bit pair (row T / 4, columns 2 (T % 4), +1) of each matrix, or with .trans
//     (rows 2 (T % 4), +1, column T / 4);
//   * mma.sync.m16n8k16 (f16 / bf16, f32 accumulate) rebuilds the 16x16 A and 16x8 B tiles from
//     all lanes' registers: a0 (row g, k 2t, 2t+1), a1 (row g+8), a2 (row g, k 8+2t..),
//     a3 (row g+8, k 8+..); b0 (k 2t, 2t+1, col g), b1 (k 8+2t, ..); c0 c1 (row g, cols 2t, 2t+1),
//     c2 c3 (row g+8), the lower k in the lower half of a register; products summed in fp32;
//   * cvt.rn.{f16,bf16}[x2].f32 round to nearest even.
// The extern "C" launcher runs a whole grid, one block after another, and returns an EMU_* code.

#include "warp_emulator.h"

namespace emu {

enum Kind { K_NONE, K_LDM, K_LDMT, K_MMA_F16, K_MMA_BF16 };

}  // namespace emu

// --- the primitives the kernel calls ------------------------------------------------------------

static u16* const smem = reinterpret_cast<u16*>(emu::smem_bytes);

template <int N>
static inline void cp_async_wait() {
  emu::land_copies(N);
}

static inline void ldmatrix_common(u32* r, u32 addr, bool trans) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  if (addr % 16 || addr + 16 > emu::SMEM_BYTES) emu::fail(EMU_BAD_LAUNCH);
  w.w[lane][0] = addr;
  emu::publish(trans ? emu::K_LDMT : emu::K_LDM);
  for (int i = 0; i < 4; ++i) {
    auto elem = [&](int row, int col) {
      u16 v;
      std::memcpy(&v, emu::smem_bytes + w.w[8 * i + row][0] + 2 * col, 2);
      return v;
    };
    u16 lo, hi;
    if (!trans) {
      lo = elem(lane / 4, 2 * (lane % 4));
      hi = elem(lane / 4, 2 * (lane % 4) + 1);
    } else {
      lo = elem(2 * (lane % 4), lane / 4);
      hi = elem(2 * (lane % 4) + 1, lane / 4);
    }
    r[i] = (u32)lo | ((u32)hi << 16);
  }
  emu::retire();
}

static inline void ldmatrix_x4(u32* r, u32 addr) { ldmatrix_common(r, addr, false); }
static inline void ldmatrix_x4_trans(u32* r, u32 addr) { ldmatrix_common(r, addr, true); }

template <bool BF16>
static inline void mma16816(float* d, const u32* a, const u32* b) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b[0];
  w.w[lane][5] = b[1];
  emu::publish(BF16 ? emu::K_MMA_BF16 : emu::K_MMA_F16);
  auto cvt = [](u16 h) { return BF16 ? emu::bf16_to_f32(h) : emu::f16_to_f32(h); };
  auto A = [&](int row, int k) {  // A[row][k] of the 16x16 tile
    const int src = (row % 8) * 4 + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 16x8 tile
    const int src = n * 4 + (k % 8) / 2;
    const int reg = 4 + (k >= 8 ? 1 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    float sum = d[e];
    for (int k = 0; k < 16; ++k) sum += A(row, k) * B(k, col);
    d[e] = sum;
  }
  emu::retire();
}

template <bool BF16>
static inline u16 pack1(float x) {
  return BF16 ? emu::f32_to_bf16(x) : emu::f64_to_f16(x);
}

template <bool BF16>
static inline u32 pack2(float lo, float hi) {
  return (u32)pack1<BF16>(lo) | ((u32)pack1<BF16>(hi) << 16);
}

#define WB_EMULATE 1
#include WB_GEMM_SOURCE

// --- launcher (ctypes) --------------------------------------------------------------------------

typedef void (*GemmFn)(const u16*, const u16*, u16*, int, int, int);

extern "C" int emu_gemm(void* fn, unsigned blocks, const u16* a, const u16* b, u16* c, int m,
                        int n, int k) {
  GemmFn f = reinterpret_cast<GemmFn>(fn);
  return emu::run(dim3{blocks, 1, 1}, wb::THREADS, [=] { f(a, b, c, m, n, k); });
}

extern "C" int emu_gemm_threads() { return wb::THREADS; }
extern "C" int emu_gemm_smem_bytes() { return wb::SMEM_BYTES; }
