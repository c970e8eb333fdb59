// How long a thread asleep on a condition variable takes to run once signalled, after the
// signalling thread has idled GAP microseconds (experiments/cpu_speed.md, "Why a sleeping
// thread costs here").
//
//   gcc -O2 -pthread -o /tmp/wake_latency experiments/cpu_speed/wake_latency.c
//   /tmp/wake_latency ROUNDS GAP_US
//
// Prints the median, 10th and 90th percentile in nanoseconds, from the signal to the
// waiter's first instruction after its wait.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready = PTHREAD_COND_INITIALIZER;
static long long posted, seen, signalled_at;
static long long latency[MAX_ROUNDS];

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *waiter(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (seen == posted) pthread_cond_wait(&ready, &lock);
    latency[seen] = now_ns() - signalled_at;
    __atomic_store_n(&seen, seen + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static int by_value(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ROUNDS GAP_US\n", argv[0]);
    return 2;
  }
  int rounds = atoi(argv[1]), gap_us = atoi(argv[2]);
  if (rounds < 10 || rounds > MAX_ROUNDS) rounds = rounds < 10 ? 10 : MAX_ROUNDS;
  pthread_t thread;
  pthread_create(&thread, NULL, waiter, NULL);
  for (int i = 0; i < rounds; i++) {
    usleep(gap_us);
    pthread_mutex_lock(&lock);
    signalled_at = now_ns();
    posted++;
    pthread_cond_signal(&ready);
    pthread_mutex_unlock(&lock);
    while (__atomic_load_n(&seen, __ATOMIC_ACQUIRE) < posted) {
    }
  }
  qsort(latency, rounds, sizeof latency[0], by_value);
  printf("gap %d us: wake median %lld ns, p10 %lld, p90 %lld\n", gap_us, latency[rounds / 2],
         latency[rounds / 10], latency[rounds * 9 / 10]);
  return 0;
}
