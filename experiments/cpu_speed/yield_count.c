// An LD_PRELOAD counter of sched_yield calls by thread, for experiments/cpu_speed.md
// ("The kernel threads' spin, set" and "Why a sleeping thread costs here").
//
//   gcc -O2 -shared -fPIC -o /tmp/yield_count.so experiments/cpu_speed/yield_count.c -ldl
//   LD_PRELOAD=/tmp/yield_count.so python experiments/cpu_speed/thread_yields.py
//
// yield_count_reset() zeroes the counts; yield_count_dump() prints "tid name count" for
// every thread that yielded since, to stderr. The thread's name is read every 4,096 calls,
// so a thread named after its first yield is still named.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SLOTS 256

struct slot {
  long tid;
  char name[16];
  long count;
};

static struct slot slots[SLOTS];
static int used;
static __thread int mine = -1;
static int (*real_yield)(void);

int sched_yield(void) {
  if (!real_yield) real_yield = (int (*)(void))dlsym(RTLD_NEXT, "sched_yield");
  if (mine < 0) {
    mine = __atomic_fetch_add(&used, 1, __ATOMIC_RELAXED);
    if (mine >= SLOTS) mine = SLOTS - 1;
    slots[mine].tid = syscall(SYS_gettid);
  }
  if ((slots[mine].count++ & 4095) == 0) prctl(PR_GET_NAME, slots[mine].name);
  return real_yield();
}

void yield_count_reset(void) {
  for (int i = 0; i < used && i < SLOTS; i++) slots[i].count = 0;
}

void yield_count_dump(void) {
  for (int i = 0; i < used && i < SLOTS; i++)
    if (slots[i].count) fprintf(stderr, "%ld %s %ld\n", slots[i].tid, slots[i].name, slots[i].count);
}
