// sched_yield as a short sleep, for LD_PRELOAD where several MindSpore processes share the
// cores (`make test` runs two on two cores; see experiments/cpu_speed.md, "The runtime's
// spinning").
//
// MindSpore's CPU thread pool spins on std::this_thread::yield before its threads wait.
// With one process per machine the spin buys latency. With two, each one's spinning
// threads hold the cores that the other's workers are waiting for; a yield that sleeps
// DDPM_YIELD_SLEEP_US microseconds (default 50) hands the core over instead.
#include <sched.h>
#include <stdlib.h>
#include <time.h>

static long sleep_ns = -1;

int sched_yield(void) {
  if (sleep_ns < 0) {
    const char *us = getenv("DDPM_YIELD_SLEEP_US");
    sleep_ns = 1000L * (us ? atol(us) : 50);
  }
  struct timespec ts = {sleep_ns / 1000000000L, sleep_ns % 1000000000L};
  nanosleep(&ts, NULL);
  return 0;
}
