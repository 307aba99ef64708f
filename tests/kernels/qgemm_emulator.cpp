// Host emulation of the quantized GEMM CUDA kernels (kernels/qgemm/w8a8.cu, w4a16.cu) for tests on
// machines without a GPU (tests/kernels/test_qgemm_cuda.py builds it as a shared library, with
// -I<kernels folder> for the sources' #include "ptx.cuh").
//
// The kernel sources are compiled unchanged; their PTX primitives are ptx_emulator.h's, on the
// runtime of warp_emulator.h. Every global load must be aligned to its size and lie inside a
// buffer the launcher registered with emu_clear_buffers / emu_add_buffer (EMU_OOB otherwise).
// extern "C" launchers run a whole grid, one block after another, and return an EMU_* code.

#include "ptx_emulator.h"

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
