// The spin of MindSpore's CPU kernel threads, as settings (runtime.kernel_spin and
// runtime.kernel_pause).
//
// A kernel thread of MindSpore 2.10's pool that runs out of work calls sched_yield up to its
// max spin count (3,000) before it sleeps on a condition variable, and every yield is a
// system call. ParallelLaunch (libmindspore_ops_cpu) sets that count through
// ThreadPool::SetKernelThreadMaxSpinCount(3000) before every launch, so no API of 2.10
// keeps another. This file defines that method; loaded RTLD_GLOBAL before MindSpore
// (ddpm.runtime.spin), it is the definition MindSpore's libraries bind to. It passes
// ddpm_kernel_spin on to MindSpore's own method instead of the count asked for, unless
// ddpm_kernel_spin is negative, and records the pool for the kernels' OpenMP regions
// (ddpm/nn/kernels/pool_omp.cc). Built with the C compiler as C; the name is the method's
// mangled one.
//
// The yields themselves: libmindspore_core's sched_yield slot in its global offset table is
// pointed at kernel_yield, which spins ddpm_kernel_pause pause instructions on a kernel
// thread instead of entering the kernel (0: the system call, as before), and calls the real
// sched_yield on every other thread. Every YIELD_EVERY-th pause spin of the kernel threads
// is followed by the real call too: on an idle core it returns at once, and where another
// process waits for the core it hands the core over, as every yield did before (a spin
// that never yields made steps 1.4x slower beside one busy process; experiments/
// cpu_speed.md, "Pause spins beside another process").
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define METHOD "_ZN9mindspore10ThreadPool27SetKernelThreadMaxSpinCountEi"
#define CORE "libmindspore_core.so"
#define YIELD_EVERY 64  // of the 3,000 yields a kernel thread spins before it sleeps: 46 kept

typedef void (*set_count)(void *pool, int count);

int ddpm_kernel_spin = -1;         // yields before a kernel thread sleeps; < 0: MindSpore's
long ddpm_kernel_spin_calls = 0;   // calls that reached this method (read by the tests)
void *ddpm_kernel_pool = NULL;     // the pool MindSpore last launched on
int ddpm_kernel_pause = 0;         // pause instructions in place of a kernel thread's yield
long ddpm_kernel_pauses = 0;       // yields so replaced (read by the tests)
long ddpm_kernel_yields_kept = 0;  // of them, those followed by the system call (the tests)
int ddpm_yield_patched = 0;        // whether libmindspore_core's yields reach kernel_yield

static set_count mindspore_method;
static int (*libc_yield)(void);
static pthread_once_t looked_up = PTHREAD_ONCE_INIT;
static __thread int kernel_thread = -1;  // this thread is one of MindSpore's kernel threads

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

// Whether the calling thread is one of MindSpore's kernel threads, by its name (also asked by
// the kernels' OpenMP regions, ddpm/nn/kernels/pool_omp.cc).
int ddpm_on_kernel_thread(void) {
  if (kernel_thread < 0) {
    char name[16] = {0};
    pthread_getname_np(pthread_self(), name, sizeof name);
    kernel_thread = strncmp(name, "KernelThread", 12) == 0;
  }
  return kernel_thread;
}

static int kernel_yield(void) {
  const int pauses = __atomic_load_n(&ddpm_kernel_pause, __ATOMIC_RELAXED);
  if (pauses > 0 && ddpm_on_kernel_thread()) {
    for (int i = 0; i < pauses; ++i) relax();
    if (__atomic_add_fetch(&ddpm_kernel_pauses, 1, __ATOMIC_RELAXED) % YIELD_EVERY) return 0;
    __atomic_fetch_add(&ddpm_kernel_yields_kept, 1, __ATOMIC_RELAXED);
  }
  return libc_yield();
}

#if defined(__x86_64__)
#define JUMP_SLOT R_X86_64_JUMP_SLOT
#elif defined(__aarch64__)
#define JUMP_SLOT R_AARCH64_JUMP_SLOT
#endif

// Points libmindspore_core's GOT slot for sched_yield at kernel_yield (dl_iterate_phdr
// callback; returns 1 once the library is found).
static int patch_yield(struct dl_phdr_info *info, size_t size, void *unused) {
  (void)size, (void)unused;
  if (!strstr(info->dlpi_name, CORE)) return 0;
#ifdef JUMP_SLOT
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  const ElfW(Rela) *rela = NULL;
  const ElfW(Sym) *symbols = NULL;
  const char *names = NULL;
  size_t bytes = 0;
  for (; dyn && dyn->d_tag != DT_NULL; ++dyn) {
    // glibc relocates these addresses in place on x86-64 and AArch64; else they are offsets.
    const ElfW(Addr) at = dyn->d_un.d_ptr < info->dlpi_addr ? info->dlpi_addr + dyn->d_un.d_ptr
                                                            : dyn->d_un.d_ptr;
    if (dyn->d_tag == DT_JMPREL) rela = (const ElfW(Rela) *)at;
    if (dyn->d_tag == DT_PLTRELSZ) bytes = dyn->d_un.d_val;
    if (dyn->d_tag == DT_SYMTAB) symbols = (const ElfW(Sym) *)at;
    if (dyn->d_tag == DT_STRTAB) names = (const char *)at;
  }
  if (!rela || !symbols || !names) return 1;
  for (size_t i = 0; i < bytes / sizeof *rela; ++i) {
    if (ELF64_R_TYPE(rela[i].r_info) != JUMP_SLOT) continue;
    if (strcmp(names + symbols[ELF64_R_SYM(rela[i].r_info)].st_name, "sched_yield")) continue;
    void **slot = (void **)(info->dlpi_addr + rela[i].r_offset);
    const uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
    // The slot may sit in the RELRO segment, read-only after loading.
    if (mprotect((void *)page, sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE)) return 1;
    __atomic_store_n(slot, (void *)kernel_yield, __ATOMIC_RELEASE);
    ddpm_yield_patched = 1;
    return 1;
  }
#endif
  return 1;
}

// Once per process, whichever thread launches first; a miss is reported once, not per launch.
static void look_up(void) {
  void *core = dlopen(CORE, RTLD_NOLOAD | RTLD_NOW);
  mindspore_method = core ? (set_count)dlsym(core, METHOD) : NULL;
  if (!mindspore_method) fprintf(stderr, "ddpm: %s not found in %s\n", METHOD, CORE);
  libc_yield = (int (*)(void))dlsym(RTLD_DEFAULT, "sched_yield");
  if (libc_yield && core) dl_iterate_phdr(patch_yield, NULL);
}

void _ZN9mindspore10ThreadPool27SetKernelThreadMaxSpinCountEi(void *pool, int count) {
  __atomic_fetch_add(&ddpm_kernel_spin_calls, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&ddpm_kernel_pool, pool, __ATOMIC_RELAXED);
  pthread_once(&looked_up, look_up);
  if (mindspore_method) mindspore_method(pool, ddpm_kernel_spin >= 0 ? ddpm_kernel_spin : count);
}
