// Host emulation of the attention CUDA kernels (kernels/attention/flash_fwd.cu, flash_decode.cu),
// for tests on machines without a GPU (tests/kernels/test_attention_cuda.py builds it as a shared
// library).
//
// The kernel sources are compiled unchanged except for their device primitives (the sections
// guarded by WB_EMULATE). The runtime (fibers for threads, block / warp barriers, cp.async
// queues, poisoned shared memory, number formats, error codes) is warp_emulator.h; this file
// adds the attention kernels' primitives, written from the PTX ISA's definitions:
//   * __shfl_xor_sync, ldmatrix and mma.sync are warp collectives (all 32 lanes, same kind);
//   * mma.sync.m16n8k16 rebuilds the 16x16 A and 16x8 B tiles from all lanes' fragments with the
//     PTX fragment layouts (A: a0..a7 at row groupID (+8), column 2 * tid_in_group (+1, +8);
//     B: b0..b3 at k = 2 * tid_in_group (+1, +8), n = groupID; C: c0..c3 at row groupID (+8),
//     column 2 * tid_in_group (+1)) and multiplies in fp32;
//   * ldmatrix.x4 (.trans): lane 8i + r names row r of matrix i (16-byte aligned); lane t
//     receives the 16-bit pair (row t / 4, columns 2 (t % 4), +1) of each matrix, or with .trans
//     (rows 2 (t % 4), +1, column t / 4);
//   * global loads (cp.async sources, load16) must be 16-byte aligned (EMU_OOB otherwise); the
//     launchers register no buffers, so the header's bounds check of global reads is off here;
//   * ex2 / lg2 are exp2f / log2f.
// extern "C" launchers run a whole grid, one block after another, and return an EMU_* code.

#include "warp_emulator.h"

namespace emu {

enum Kind { K_NONE, K_SHFL, K_LDM, K_LDMT, K_MMA_F16, K_MMA_BF16 };

}  // namespace emu

// --- the primitives the kernels call ------------------------------------------------------------

static inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

static inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  if (mask != 0xffffffffu) emu::fail(EMU_DIVERGENT);
  emu::WarpSlots& w = emu::warp_of();
  std::memcpy(&w.w[emu::lane_of()][0], &v, 4);
  emu::publish(emu::K_SHFL);
  float r;
  std::memcpy(&r, &w.w[emu::lane_of() ^ lane_mask][0], 4);
  emu::retire();
  return r;
}

static inline float ex2(float x) { return exp2f(x); }
static inline float lg2(float x) { return log2f(x); }

// flash_fwd.cu

static u16* const smem = reinterpret_cast<u16*>(emu::smem_bytes);

static inline void cp_async_wait_all() { emu::land_copies(0); }

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
static inline void mma16816(float* d, const u32* a, u32 b0, u32 b1) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b0;
  w.w[lane][5] = b1;
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
static inline u32 pack2(float lo, float hi) {
  const u16 l = BF16 ? emu::f32_to_bf16(lo) : emu::f64_to_f16(lo);
  const u16 h = BF16 ? emu::f32_to_bf16(hi) : emu::f64_to_f16(hi);
  return (u32)l | ((u32)h << 16);
}

// flash_decode.cu

template <class T>
static inline void load16(T& r, const u16* p) {
  static_assert(sizeof(T) == 16, "16-byte loads");
  if (emu::check_read(p, 16, 16)) std::memcpy(&r, p, 16);
}

static inline float h2f(u32 bits) { return emu::f16_to_f32((u16)(bits & 0xffffu)); }

template <bool BF16>
static inline u16 pack1(float x) {
  return BF16 ? emu::f32_to_bf16(x) : emu::f64_to_f16(x);
}

#define WB_EMULATE 1
#include WB_FLASH_FWD_SOURCE
#include WB_FLASH_DECODE_SOURCE

// --- launchers (ctypes) -------------------------------------------------------------------------

typedef void (*FwdFn)(const u16*, const u16*, const u16*, u16*, float*, int, int, int, float);
typedef void (*SplitFn)(const u16*, const u16*, const u16*, float*, float*, int, int, int, int,
                        float);
typedef void (*CombineFn)(const float*, const float*, u16*, float*, int, int);

extern "C" int emu_flash_fwd(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                             const u16* q, const u16* k, const u16* v, u16* o, float* lse, int n,
                             int hq, int hkv, float scale_log2) {
  FwdFn f = reinterpret_cast<FwdFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads,
                  [=] { f(q, k, v, o, lse, n, hq, hkv, scale_log2); });
}

extern "C" int emu_decode_split(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                                const u16* q, const u16* k, const u16* v, float* o_part,
                                float* lse_part, int l, int hq, int hkv, int chunk,
                                float scale_log2) {
  SplitFn f = reinterpret_cast<SplitFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads,
                  [=] { f(q, k, v, o_part, lse_part, l, hq, hkv, chunk, scale_log2); });
}

extern "C" int emu_decode_combine(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                                  const float* o_part, const float* lse_part, u16* o, float* lse,
                                  int splits, int d) {
  CombineFn f = reinterpret_cast<CombineFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads, [=] { f(o_part, lse_part, o, lse, splits, d); });
}
