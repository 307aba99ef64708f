// Host emulation of the quantized GEMM CUDA kernels (kernels/qgemm/w8a8.cu, w4a16.cu) for tests on
// machines without a GPU (tests/kernels/test_qgemm_cuda.py builds it as a shared library).
//
// The kernel sources are compiled unchanged except for their device-primitive sections (guarded
// by WB_EMULATE). The runtime (fibers for threads, block / warp barriers, cp.async queues with
// zero-fill, poisoned shared memory, global-read checks, number formats, error codes) is
// warp_emulator.h; this file adds the qgemm kernels' primitives, written from the PTX ISA's
// definitions:
//   * ldmatrix and mma.sync are warp collectives (all 32 lanes, same kind);
//   * mma.sync.m16n8k16 (f16 / bf16, f32 accumulate) and mma.sync.m16n8k32 (s8, s32 accumulate)
//     rebuild the A and B tiles from all lanes' registers with the PTX fragment layouts
//     (groupID g = lane / 4, t = lane % 4):
//       m16n8k16: a0 (row g, k 2t, 2t+1), a1 (row g+8), a2 (row g, k 8+2t..), a3 (row g+8, k 8+..);
//                 b0 (k 2t, 2t+1, col g), b1 (k 8+2t, ..); c0 c1 (row g, cols 2t, 2t+1), c2 c3 (g+8)
//       m16n8k32: a0 (row g, k 4t..4t+3), a1 (row g+8), a2 (row g, k 16+4t..), a3 (row g+8, k 16+..);
//                 b0 (k 4t..4t+3, col g), b1 (k 16+4t..); c as above (s32)
//     with the lower k in the lower bits of a register;
//   * ldmatrix.x4 (b16, no .trans): lane 8i + r names row r of matrix i; lane T receives the
//     16-bit pair (row T / 4, elements 2 (T % 4), +1) of each matrix;
//   * every global load (cp.async source, ld.global.*) must be aligned to its size and lie inside
//     a buffer the launcher registered with emu_clear_buffers / emu_add_buffer (EMU_OOB otherwise);
//   * half2 arithmetic rounds to nearest even; dp4a is the sum of four signed byte products; the
//     split-K semaphore is plain memory (blocks run one after another).
// extern "C" launchers run a whole grid, one block after another, and return an EMU_* code.

#include "warp_emulator.h"

namespace emu {

enum Kind { K_NONE, K_LDM, K_MMA_F16, K_MMA_BF16, K_MMA_S8 };

static s8 byte_of(u32 word, int i) { return (s8)((word >> (8 * i)) & 0xffu); }

}  // namespace emu

// --- the primitives the kernels call --------------------------------------------------------------

static unsigned char* const smem = emu::smem_bytes;

template <int BYTES>
static inline void cp_async(u32 dst, const void* src, int src_bytes) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
  emu::queue_copy(dst, src, BYTES, src_bytes);
}

template <int N>
static inline void cp_async_wait() {
  emu::land_copies(N);
}

static inline void ldmatrix_x4(u32* r, u32 addr) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  if (addr % 16 || addr + 16 > emu::SMEM_BYTES) emu::fail(EMU_BAD_LAUNCH);
  w.w[lane][0] = addr;
  emu::publish(emu::K_LDM);
  for (int i = 0; i < 4; ++i) {
    const u32 row = w.w[8 * i + lane / 4][0];
    std::memcpy(&r[i], emu::smem_bytes + row + 4 * (lane % 4), 4);
  }
  emu::retire();
}

template <bool BF16>
static inline void mma16816(float* d, const u32* a, const u32* b) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b[0];
  w.w[lane][5] = b[1];
  emu::publish(BF16 ? emu::K_MMA_BF16 : emu::K_MMA_F16);
  auto cvt = [](u16 h) { return BF16 ? emu::bf16_to_f32(h) : emu::f16_to_f32(h); };
  auto A = [&](int row, int k) {  // A[row][k] of the 16 x 16 tile
    const int src = (row % 8) * 4 + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 16 x 8 tile
    const int src = n * 4 + (k % 8) / 2;
    return cvt(emu::half_of(w.w[src][4 + (k >= 8 ? 1 : 0)], k % 2));
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    double sum = d[e];  // products of 16-bit floats are exact; the sum is rounded once
    for (int k = 0; k < 16; ++k) sum += (double)A(row, k) * B(k, col);
    d[e] = (float)sum;
  }
  emu::retire();
}

static inline void mma_s8(int* d, const u32* a, const u32* b) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b[0];
  w.w[lane][5] = b[1];
  emu::publish(emu::K_MMA_S8);
  auto A = [&](int row, int k) {  // A[row][k] of the 16 x 32 tile
    const int src = (row % 8) * 4 + (k % 16) / 4;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
    return (int)emu::byte_of(w.w[src][reg], k % 4);
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 32 x 8 tile
    const int src = n * 4 + (k % 16) / 4;
    return (int)emu::byte_of(w.w[src][4 + (k >= 16 ? 1 : 0)], k % 4);
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    i64 sum = d[e];
    for (int k = 0; k < 32; ++k) sum += A(row, k) * B(k, col);
    d[e] = (int)sum;
  }
  emu::retire();
}

static inline int dp4a(int a, int b, int c) {
  i64 sum = c;
  for (int i = 0; i < 4; ++i) sum += emu::byte_of((u32)a, i) * emu::byte_of((u32)b, i);
  return (int)sum;
}

static inline float bits_f32(u32 u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <bool BF16>
static inline void to_float2(u32 v, float& lo, float& hi) {
  lo = BF16 ? emu::bf16_to_f32((u16)v) : emu::f16_to_f32((u16)v);
  hi = BF16 ? emu::bf16_to_f32((u16)(v >> 16)) : emu::f16_to_f32((u16)(v >> 16));
}

template <bool BF16>
static inline u16 to16(float x) {
  return BF16 ? emu::f32_to_bf16(x) : emu::f64_to_f16(x);
}

template <bool BF16>
static inline u32 pack2(float lo, float hi) {
  return (u32)to16<BF16>(lo) | ((u32)to16<BF16>(hi) << 16);
}

template <int BYTES>
static inline void load_global(u32* r, const void* p) {
  if (emu::check_read(p, BYTES, BYTES)) std::memcpy(r, p, BYTES);
}

static inline void ld_stream4(u32* r, const void* p) { load_global<16>(r, p); }
static inline void ld_nc4(u32* r, const void* p) { load_global<16>(r, p); }
static inline void ld_nc2(u32* r, const void* p) { load_global<8>(r, p); }

static inline u32 ld_nc1(const void* p) {
  u32 r;
  load_global<4>(&r, p);
  return r;
}

static inline u32 halves(u32 a, u32 b, double (*op)(double, double), bool bf16) {
  u32 r = 0;
  for (int h = 0; h < 2; ++h) {
    const u16 x = emu::half_of(a, h), y = emu::half_of(b, h);
    const double v = bf16 ? op(emu::bf16_to_f32(x), emu::bf16_to_f32(y))
                          : op(emu::f16_to_f32(x), emu::f16_to_f32(y));
    r |= (u32)(bf16 ? emu::f32_to_bf16((float)v) : emu::f64_to_f16(v)) << (16 * h);
  }
  return r;
}

static inline u32 sub_f16x2(u32 a, u32 b) {
  return halves(a, b, [](double x, double y) { return x - y; }, false);
}

static inline u32 mul_f16x2(u32 a, u32 b) {
  return halves(a, b, [](double x, double y) { return x * y; }, false);
}

// a * b + c per bf16 half, rounded once (exact in double for the kernel's operands: small
// integers and one 8-bit-mantissa scale).
static inline u32 fma_bf16x2(u32 a, u32 b, u32 c) {
  u32 r = 0;
  for (int h = 0; h < 2; ++h) {
    const double v = (double)emu::bf16_to_f32(emu::half_of(a, h)) *
                         emu::bf16_to_f32(emu::half_of(b, h)) +
                     emu::bf16_to_f32(emu::half_of(c, h));
    r |= (u32)emu::f32_to_bf16((float)v) << (16 * h);
  }
  return r;
}

static inline void fence_gpu() {}

static inline u32 atomic_inc_gpu(u32* p) {
  return emu::check_read(p, 4, 4) ? (*p)++ : 0;
}

static inline float ld_cg(const float* p) {
  return emu::check_read(p, 4, 4) ? *p : 0.0f;
}

static inline void st_relaxed_zero(u32* p) { *p = 0; }

#define WB_EMULATE 1
#include WB_W8A8_SOURCE
#include WB_W4A16_SOURCE

// --- launchers (ctypes) ---------------------------------------------------------------------------

typedef void (*W8A8Fn)(const s8*, const s8*, const float*, const float*, u16*, int, int, int, int,
                       int);
typedef void (*GemvFn)(const u16*, const u32*, const u16*, const u8*, u16*, float*, u32*, int, int,
                       int, int, int);
typedef void (*GemmFn)(const u16*, const u32*, const u16*, const u8*, u16*, int, int, int, int);

extern "C" int emu_w8a8(void* fn, unsigned gx, unsigned gy, int threads, const s8* a,
                        const s8* bt, const float* sa, const float* sb, u16* c, int m, int n,
                        int k, int sa_step, int sb_step) {
  W8A8Fn f = reinterpret_cast<W8A8Fn>(fn);
  return emu::run(dim3{gx, gy, 1}, threads,
                  [=] { f(a, bt, sa, sb, c, m, n, k, sa_step, sb_step); });
}

extern "C" int emu_w4a16_gemv(void* fn, unsigned gx, unsigned gy, int threads, const u16* x,
                              const u32* qw, const u16* s, const u8* z, u16* c, float* partial,
                              u32* counters, int m, int n, int k, int g, int chunks_per_split) {
  GemvFn f = reinterpret_cast<GemvFn>(fn);
  return emu::run(dim3{gx, gy, 1}, threads,
                  [=] { f(x, qw, s, z, c, partial, counters, m, n, k, g, chunks_per_split); });
}

extern "C" int emu_w4a16_gemm(void* fn, unsigned gx, unsigned gy, int threads, const u16* x,
                              const u32* qw, const u16* s, const u8* z, u16* c, int m, int n,
                              int k, int g) {
  GemmFn f = reinterpret_cast<GemmFn>(fn);
  return emu::run(dim3{gx, gy, 1}, threads, [=] { f(x, qw, s, z, c, m, n, k, g); });
}
