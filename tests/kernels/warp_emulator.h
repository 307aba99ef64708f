// Shared runtime of the host CUDA-kernel emulators (gemm_emulator.cpp, attention_emulator.cpp,
// qgemm_emulator.cpp), for tests on machines without a GPU: threads, barriers, warp exchanges,
// cp.async queues, number formats and the CUDA built-ins the kernels call (__syncthreads,
// __shfl_xor_sync, min). The PTX primitives of kernels/ptx.cuh are emulated on top of it in
// ptx_emulator.h, which each emulator includes before the kernel sources.
//
//   * every CUDA thread of a block is a cooperative fiber (ucontext) that runs until it reaches a
//     barrier: __syncthreads is a block barrier, and a warp-collective instruction is an exchange
//     through per-warp slots between two warp barriers (emu::publish, then emu::retire). A
//     collective that not all 32 lanes enter with the same kind, or a barrier nobody can pass,
//     fails the launch (EMU_DIVERGENT, EMU_DEADLOCK); the first error is the one reported;
//   * emu::run runs a whole grid, one block after another; every block starts with fresh fibers
//     and shared memory filled with 0xFF bytes (NaN as fp16 / bf16, -NaN as fp32), so reading
//     what nothing wrote poisons the result;
//   * cp.async copies are queued per thread and land only at cp.async.wait_group (bytes past the
//     source size are zero-filled), so reading a stage before waiting for it reads stale data;
//   * a global read must be aligned to its size (EMU_OOB otherwise) and, once a launcher has
//     registered readable buffers (emu_clear_buffers / emu_add_buffer), lie inside one of them
//     (EMU_OOB otherwise); with no registration the bounds check is off (opt-in);
//   * fp16 / bf16 conversions round to nearest even.

#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>
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

// The warp collectives: every lane of a warp must enter the same one.
enum Kind { K_NONE, K_SHFL, K_LDM, K_LDMT, K_MMA_F16, K_MMA_BF16, K_MMA_S8 };
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

struct WarpSlots {
  Barrier bar;
  int kind[32];  // the collective each lane entered (a Kind)
  u32 w[32][8];  // each lane's operands
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
  bool check_bounds = false;  // set once a launcher registers buffers
  Barrier block_bar;
  int threads = 0;
  int current = 0;
  unsigned long epoch = 0;  // bumps when a barrier opens or a thread ends
  int error = EMU_OK;
  std::function<void()> body;
};

static State S;
alignas(128) static unsigned char smem_bytes[SMEM_BYTES];

// Records an error; the first one is kept.
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
  while (b.gen == gen) yield();  // after an error the scheduler never resumes it
}

static void trampoline() {
  S.body();
  S.done[S.current] = 1;
  ++S.epoch;
  swapcontext(&S.ctx[S.current], &S.sched);
}

// A global read of `bytes` at p: aligned to `align` and (when buffers are registered) inside
// one. False (and EMU_OOB) otherwise: the caller must then not read.
static bool check_read(const void* p, size_t bytes, size_t align) {
  const unsigned char* q = static_cast<const unsigned char*>(p);
  if ((uintptr_t)q % align) {
    fail(EMU_OOB);
    return false;
  }
  if (!S.check_bounds) return true;
  for (const auto& [base, size] : S.buffers)
    if (q >= base && q + bytes <= base + size) return true;
  fail(EMU_OOB);
  return false;
}

// Runs the whole grid; every block starts with fresh fibers and poisoned shared memory. The
// first error stops the launch as soon as the fiber that raised it yields (fibers are dropped,
// never resumed with half-filled warp slots).
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
            if (S.error != EMU_OK) return S.error;
            if (!S.done[t]) ++live;
          }
          if (live > 0 && S.epoch == before) return EMU_DEADLOCK;
        }
      }
  return S.error;
}

// --- warp collectives: publish, wait for the warp, compute, wait again -----------------------

static WarpSlots& warp_of() { return S.warps[S.current / 32]; }
static int lane_of() { return S.current % 32; }

// Every lane of the warp must enter the same collective (kind).
static void publish(int kind) {
  WarpSlots& w = warp_of();
  w.kind[lane_of()] = kind;
  wait(w.bar, 32);
  for (int l = 0; l < 32; ++l)
    if (w.kind[l] != kind) fail(EMU_DIVERGENT);
}

static void retire() { wait(warp_of().bar, 32); }

// --- cp.async: queued per thread, landing at wait_group ----------------------------------------

// One copy of `bytes` into shared memory at offset dst, reading src_bytes (0..bytes) from src.
static void queue_copy(u32 dst, const void* src, int bytes, int src_bytes) {
  if (dst % bytes || dst + bytes > SMEM_BYTES || src_bytes < 0 || src_bytes > bytes) {
    fail(EMU_BAD_LAUNCH);
    return;
  }
  if (src_bytes > 0 ? !check_read(src, src_bytes, bytes) : (uintptr_t)src % bytes != 0) {
    fail(EMU_OOB);  // the source must be aligned even when nothing is read
    return;
  }
  S.open[S.current].push_back(
      {smem_bytes + dst, static_cast<const unsigned char*>(src), bytes, src_bytes});
}

static void commit_copies() {
  auto& open = S.open[S.current];
  S.groups[S.current].push_back(open);
  open.clear();
}

// Lands this thread's oldest committed groups until at most `keep` are pending.
static void land_copies(size_t keep) {
  auto& groups = S.groups[S.current];
  while (groups.size() > keep) {
    for (const Copy& c : groups.front()) {
      std::memset(c.dst, 0, c.bytes);
      if (c.src_bytes > 0) std::memcpy(c.dst, c.src, c.src_bytes);
    }
    groups.erase(groups.begin());
  }
}

// --- number formats ------------------------------------------------------------------------------

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

// One rounding, to nearest even (a float argument converts to double exactly).
static u16 f64_to_f16(double v) {
  const _Float16 x = (_Float16)v;
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

}  // namespace emu

// --- CUDA built-ins the kernels call -------------------------------------------------------------

static inline int min(int a, int b) { return a < b ? a : b; }

static inline void __syncthreads() { emu::wait(emu::S.block_bar, emu::S.threads); }

// A warp collective: the value of lane (this lane ^ lane_mask); the whole warp must take part.
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

// --- launcher side (ctypes): readable global memory ----------------------------------------------

// Starts a registration: from now on every global read is checked against the buffers added.
extern "C" void emu_clear_buffers() {
  emu::S.buffers.clear();
  emu::S.check_bounds = true;
}

extern "C" void emu_add_buffer(const void* p, size_t bytes) {
  emu::S.buffers.emplace_back(static_cast<const unsigned char*>(p), bytes);
}
