// The spin of MindSpore's CPU kernel threads, as a setting (runtime.kernel_spin).
//
// A kernel thread of MindSpore 2.10's pool that runs out of work calls sched_yield up to its
// max spin count (3,000) before it sleeps on a condition variable, and every yield is a
// system call. ParallelLaunch (libmindspore_ops_cpu) sets that count through
// ThreadPool::SetKernelThreadMaxSpinCount(3000) before every launch, so no API of 2.10
// keeps another. This file defines that method; loaded RTLD_GLOBAL before MindSpore
// (ddpm.runtime.spin), it is the definition MindSpore's libraries bind to. It passes
// ddpm_kernel_spin on to MindSpore's own method instead of the count asked for, unless
// ddpm_kernel_spin is negative. Built with the C compiler as C; the name is the method's
// mangled one.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#define METHOD "_ZN9mindspore10ThreadPool27SetKernelThreadMaxSpinCountEi"

typedef void (*set_count)(void *pool, int count);

int ddpm_kernel_spin = -1;       // yields before a kernel thread sleeps; < 0: MindSpore's count
long ddpm_kernel_spin_calls = 0;  // calls that reached this method (read by the tests)

static set_count mindspore_method;
static pthread_once_t looked_up = PTHREAD_ONCE_INIT;

// Once per process, whichever thread launches first; a miss is reported once, not per launch.
static void look_up(void) {
  void *core = dlopen("libmindspore_core.so", RTLD_NOLOAD | RTLD_NOW);
  mindspore_method = core ? (set_count)dlsym(core, METHOD) : NULL;
  if (!mindspore_method) fprintf(stderr, "ddpm: %s not found in libmindspore_core.so\n", METHOD);
}

void _ZN9mindspore10ThreadPool27SetKernelThreadMaxSpinCountEi(void *pool, int count) {
  __atomic_fetch_add(&ddpm_kernel_spin_calls, 1, __ATOMIC_RELAXED);
  pthread_once(&looked_up, look_up);
  if (mindspore_method) mindspore_method(pool, ddpm_kernel_spin >= 0 ? ddpm_kernel_spin : count);
}
