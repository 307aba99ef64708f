// Host emulation of the quantized GEMM CUDA kernels (kernels/qgemm/w8a8.cu, w4a16.cu) for tests on
// machines without a GPU (tests/kernels/test_qgemm_cuda.py builds it as a shared library).
//
// The kernel sources are compiled unchanged except for their device-primitive sections (guarded
// by WB_EMULATE), which this file supplies, written from the PTX ISA's definitions:
//   * every CUDA thread of a block is a cooperative fiber (ucontext) that runs until it reaches a
//     barrier: __syncthreads is a block barrier, and a warp-collective instruction (ldmatrix,
//     mma.sync) is an exchange through per-warp slots between two warp barriers. A collective
//     that not all 32 lanes enter with the same kind, or a barrier nobody can pass, fails the
//     launch (EMU_DIVERGENT, EMU_DEADLOCK);
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
//   * cp.async copies are queued per thread and land only at cp.async.wait_group (bytes past the
//     source size are zero-filled), so reading a stage before waiting for it reads stale data;
//     shared memory starts as 0xFF bytes in every block (NaN as fp16 / bf16), so reading what no
//     copy wrote poisons the result;
//   * every global load (cp.async source, ld.global.*) must be aligned to its size and lie inside
//     a buffer the launcher registered (EMU_OOB otherwise);
//   * fp16 / bf16 conversions and half2 arithmetic round to nearest even; dp4a is the sum of four
//     signed byte products; the split-K semaphore is plain memory (blocks run one after another).
// extern "C" launchers run a whole grid, one block after another, and return an EMU_* code.

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef signed char s8;
typedef long long i64;

#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

static dim3 threadIdx, blockIdx, gridDim, blockDim;

enum { EMU_OK = 0, EMU_DEADLOCK = 1, EMU_DIVERGENT = 2, EMU_BAD_LAUNCH = 3, EMU_OOB = 4 };

namespace emu {

constexpr int MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t SMEM_BYTES = 227 * 1024;

struct Barrier {
  int count = 0;
  unsigned gen = 0;
};

struct Copy {
  unsigned char* dst;
  const unsigned char* src;
  int bytes;      // copy size
  int src_bytes;  // bytes read; the rest is zero-filled
};

enum Kind { K_NONE, K_LDM, K_MMA_F16, K_MMA_BF16, K_MMA_S8 };

struct WarpSlots {
  Barrier bar;
  int kind[32];
  u32 w[32][8];
};

struct State {
  ucontext_t sched;
  std::vector<ucontext_t> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  std::vector<std::vector<std::vector<Copy>>> groups;  // per thread: committed copy groups
  std::vector<std::vector<Copy>> open;                 // per thread: not yet committed
  std::vector<WarpSlots> warps;
  std::vector<std::pair<const unsigned char*, size_t>> buffers;  // readable global memory
  Barrier block_bar;
  int threads = 0;
  int current = 0;
  unsigned long epoch = 0;  // bumps when a barrier opens or a thread ends
  int error = EMU_OK;
  std::function<void()> body;
};

static State S;
alignas(128) static unsigned char smem_bytes[SMEM_BYTES];

static void fail(int code) {
  if (S.error == EMU_OK) S.error = code;
}

static void yield() { swapcontext(&S.ctx[S.current], &S.sched); }

static void wait(Barrier& b, int n) {
  const unsigned gen = b.gen;
  if (++b.count == n) {
    b.count = 0;
    ++b.gen;
    ++S.epoch;
    return;
  }
  while (b.gen == gen && S.error == EMU_OK) yield();
}

static void trampoline() {
  S.body();
  S.done[S.current] = 1;
  ++S.epoch;
  swapcontext(&S.ctx[S.current], &S.sched);
}

// A global read of `bytes` at p: aligned to `align` and inside one registered buffer.
static void check_read(const void* p, size_t bytes, size_t align) {
  const unsigned char* q = static_cast<const unsigned char*>(p);
  if ((uintptr_t)q % align) fail(EMU_OOB);
  for (const auto& [base, size] : S.buffers)
    if (q >= base && q + bytes <= base + size) return;
  fail(EMU_OOB);
}

static int run(dim3 grid, int threads, const std::function<void()>& body) {
  if (threads < 32 || threads > MAX_THREADS || threads % 32) return EMU_BAD_LAUNCH;
  S.body = body;
  S.threads = threads;
  S.error = EMU_OK;
  gridDim = grid;
  blockDim = dim3{(unsigned)threads, 1, 1};
  S.ctx.assign(threads, ucontext_t{});
  S.stacks.assign(threads, std::vector<char>(STACK_BYTES));
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = dim3{bx, by, bz};
        std::memset(smem_bytes, 0xff, sizeof smem_bytes);
        S.done.assign(threads, 0);
        S.groups.assign(threads, {});
        S.open.assign(threads, {});
        S.warps.assign(threads / 32, WarpSlots{});
        S.block_bar = Barrier{};
        for (int t = 0; t < threads; ++t) {
          getcontext(&S.ctx[t]);
          S.ctx[t].uc_stack.ss_sp = S.stacks[t].data();
          S.ctx[t].uc_stack.ss_size = STACK_BYTES;
          S.ctx[t].uc_link = nullptr;
          makecontext(&S.ctx[t], trampoline, 0);
        }
        int live = threads;
        while (live > 0) {
          const unsigned long before = S.epoch;
          live = 0;
          for (int t = 0; t < threads; ++t) {
            if (S.done[t]) continue;
            S.current = t;
            threadIdx = dim3{(unsigned)t, 0, 0};
            swapcontext(&S.sched, &S.ctx[t]);
            if (!S.done[t]) ++live;
          }
          if (S.error != EMU_OK) return S.error;
          if (live > 0 && S.epoch == before) return EMU_DEADLOCK;
        }
      }
  return S.error;
}

// --- warp collectives: publish, wait for the warp, compute, wait again -------------------------

static WarpSlots& warp_of() { return S.warps[S.current / 32]; }
static int lane_of() { return S.current % 32; }

static void publish(Kind kind) {
  WarpSlots& w = warp_of();
  w.kind[lane_of()] = kind;
  wait(w.bar, 32);
  for (int l = 0; l < 32; ++l)
    if (w.kind[l] != kind) fail(EMU_DIVERGENT);
}

static void retire() { wait(warp_of().bar, 32); }

// --- number formats -------------------------------------------------------------------------------

static float f16_to_f32(u16 h) {
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return (float)x;
}

static float bf16_to_f32(u16 h) {
  const u32 bits = (u32)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static u16 f64_to_f16(double v) {
  const _Float16 x = (_Float16)v;  // one rounding, to nearest even
  u16 h;
  std::memcpy(&h, &x, 2);
  return h;
}

static u16 f32_to_bf16(float f) {
  u32 bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (u16)((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);                                    // nearest even
  return (u16)(bits >> 16);
}

static u16 half_of(u32 word, int hi) { return (u16)(hi ? word >> 16 : word & 0xffffu); }

static s8 byte_of(u32 word, int i) { return (s8)((word >> (8 * i)) & 0xffu); }

}  // namespace emu

// --- the primitives the kernels call --------------------------------------------------------------

static unsigned char* const smem = emu::smem_bytes;

static inline int min(int a, int b) { return a < b ? a : b; }

static inline void __syncthreads() { emu::wait(emu::S.block_bar, emu::S.threads); }

static inline u32 smem_addr(const void* p) {
  return (u32)(static_cast<const unsigned char*>(p) - emu::smem_bytes);
}

static inline void queue_copy(u32 dst, const void* src, int bytes, int src_bytes) {
  if (dst % bytes || dst + bytes > emu::SMEM_BYTES || src_bytes < 0 || src_bytes > bytes)
    emu::fail(EMU_BAD_LAUNCH);
  if (src_bytes > 0) emu::check_read(src, src_bytes, bytes);
  emu::S.open[emu::S.current].push_back({emu::smem_bytes + dst,
                                         static_cast<const unsigned char*>(src), bytes, src_bytes});
}

static inline void cp_async16(u32 dst, const void* src, int src_bytes) {
  queue_copy(dst, src, 16, src_bytes);
}

template <int BYTES>
static inline void cp_async(u32 dst, const void* src, int src_bytes) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
  queue_copy(dst, src, BYTES, src_bytes);
}

static inline void cp_async_commit() {
  auto& open = emu::S.open[emu::S.current];
  emu::S.groups[emu::S.current].push_back(open);
  open.clear();
}

template <int N>
static inline void cp_async_wait() {
  auto& groups = emu::S.groups[emu::S.current];
  while (groups.size() > (size_t)N) {
    for (const emu::Copy& c : groups.front()) {
      std::memset(c.dst, 0, c.bytes);
      if (c.src_bytes > 0) std::memcpy(c.dst, c.src, c.src_bytes);
    }
    groups.erase(groups.begin());
  }
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
  emu::check_read(p, BYTES, BYTES);
  std::memcpy(r, p, BYTES);
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
  emu::check_read(p, 4, 4);
  return (*p)++;
}

static inline float ld_cg(const float* p) {
  emu::check_read(p, 4, 4);
  return *p;
}

static inline void st_relaxed_zero(u32* p) { *p = 0; }

#define WB_EMULATE 1
#include WB_W8A8_SOURCE
#include WB_W4A16_SOURCE

// --- launchers (ctypes) ---------------------------------------------------------------------------

extern "C" void emu_clear_buffers() { emu::S.buffers.clear(); }

extern "C" void emu_add_buffer(const void* p, size_t bytes) {
  emu::S.buffers.emplace_back(static_cast<const unsigned char*>(p), bytes);
}

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
