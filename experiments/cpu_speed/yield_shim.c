// An LD_PRELOAD replacement for sched_yield, to measure what MindSpore's spinning threads
// cost (experiments/cpu_speed.md, "The runtime's spinning").
//
//   gcc -O2 -shared -fPIC -o /tmp/yield_shim.so experiments/cpu_speed/yield_shim.c -ldl
//   SHIM_MODE=3 SHIM_SPIN=16 LD_PRELOAD=/tmp/yield_shim.so python experiments/cpu_speed/loop_rate.py
//
// MindSpore 2.10's thread pool spins on std::this_thread::yield (sched_yield) before it
// waits on a condition variable: 3000 rounds in its kernel threads, 300000 in its actor
// threads, and the caller of ParallelLaunch spins the same way for its tasks. The counts
// are constants reset on every launch, so no setting reaches them. SHIM_MODE picks what a
// yield does instead:
//   0  the real sched_yield (the shim's own overhead);
//   2  nanosleep(SHIM_SLEEP_NS, default 50 us) on every call;
//   3  the real yield for the first SHIM_SPIN (default 16) calls in a row on a thread,
//      then nanosleep(SHIM_SLEEP_NS); a gap of over 1 ms between calls starts a new row;
//   4  64 x _mm_pause, no system call;
//   5  the real yield on every SHIM_EVERY-th call (default 8) on a thread, 64 x _mm_pause
//      on the others.
// SHIM_SLACK_NS sets each calling thread's timer slack (prctl PR_SET_TIMERSLACK; Linux's
// default is 50 us, which rounds every shorter sleep up to about 50 us).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <sched.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <time.h>

static int mode = -1;
static long spin = 16;
static long sleep_ns = 50000;
static long every = 8;
static long slack_ns = 0;
static int (*real_yield)(void);

static __thread long run_length;
static __thread long calls;
static __thread int slack_set;
static __thread long long last_ns;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void init(void) {
  const char *m = getenv("SHIM_MODE"), *s = getenv("SHIM_SPIN"), *n = getenv("SHIM_SLEEP_NS");
  const char *e = getenv("SHIM_EVERY");
  if (e) every = atol(e);
  const char *k = getenv("SHIM_SLACK_NS");
  if (k) slack_ns = atol(k);
  if (s) spin = atol(s);
  if (n) sleep_ns = atol(n);
  real_yield = (int (*)(void))dlsym(RTLD_NEXT, "sched_yield");
  mode = m ? atoi(m) : 0;
}

static void nap(void) {
  if (slack_ns > 0 && !slack_set) {
    prctl(PR_SET_TIMERSLACK, slack_ns);
    slack_set = 1;
  }
  struct timespec ts = {0, sleep_ns};
  nanosleep(&ts, NULL);
}

int sched_yield(void) {
  if (mode < 0) init();
  switch (mode) {
    case 2:
      nap();
      return 0;
    case 3: {
      long long t = now_ns();
      run_length = (t - last_ns > 1000000) ? 0 : run_length + 1;
      last_ns = t;
      if (run_length < spin) return real_yield();
      nap();
      last_ns = now_ns();
      return 0;
    }
    case 4:
      for (int i = 0; i < 64; i++) _mm_pause();
      return 0;
    case 5:
      if (++calls % every == 0) return real_yield();
      for (int i = 0; i < 64; i++) _mm_pause();
      return 0;
    default:
      return real_yield();
  }
}
