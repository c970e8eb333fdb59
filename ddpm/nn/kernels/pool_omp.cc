// The libgomp entry points that cpu_kernels.cc's OpenMP regions compile to, run on
// MindSpore's CPU kernel pool instead of libgomp's own threads (runtime.kernel_pool:
// mindspore). Linked into the kernels' library with hidden visibility, so the regions bind
// here and libgomp starts no thread: the second core keeps one worker, MindSpore's kernel
// thread, where it had two taking turns (experiments/cpu_speed.md, "OpenMP on MindSpore's
// pool").
//
// A parallel region is one ThreadPool::ParallelLaunch of a task per team member. The team is
// the launching thread and MindSpore's kernel threads; member i runs the region as OpenMP
// thread i, so static schedules split the work exactly as libgomp does, and the results are
// the same bits. Barriers spin on a shared counter. The pool is the one MindSpore last
// launched on, recorded by ddpm/runtime/kernel_spin.c.
//
// MindSpore runs a task on the launching thread when no worker is free, and a region's
// barriers need every member running at once. So a member waits at most wait_ns (50 us
// unless PoolSetWait says otherwise) for the others to start; if they have not, it cancels
// their tasks and runs the region alone, as a team of one. A region launched from a kernel
// thread, or nested in another, runs alone.
#include <dlfcn.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>

#define HIDDEN extern "C" __attribute__((visibility("hidden")))

namespace {

using Func = std::function<int(void *, int, float, float)>;
using Launch = int (*)(void *pool, const Func &func, void *content, int task_num);

constexpr const char *kLaunch =
    "_ZN9mindspore10ThreadPool14ParallelLaunchERKSt8functionIFiPviffEES2_i";
constexpr int kShares = 8;       // dynamic loops a member may run ahead of another
constexpr unsigned kCancelled = 1u << 31;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

long now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

// The iterations left of one `omp for schedule(dynamic)`, counted as libgomp's long or
// unsigned long long loops count them.
template <typename T>
struct Chunks {
  std::atomic<T> next{0};
  T end = 0, step = 0;  // step: chunk x increment
  bool up = true;

  void open(T start, T stop, T incr, T chunk, bool ascending) {
    end = stop;
    step = (chunk < 1 ? 1 : chunk) * incr;
    up = ascending;
    next.store(start, std::memory_order_relaxed);
  }

  bool take(T *istart, T *iend) {
    const T first = next.fetch_add(step, std::memory_order_relaxed);
    if (up ? first >= end : first <= end) return false;
    const T last = first + step;
    *istart = first;
    *iend = (up ? last > end : last < end) ? end : last;
    return true;
  }
};

// One dynamic loop, shared by the team; the first member to reach it opens it.
struct WorkShare {
  long generation = -1;
  Chunks<long> counted;
  Chunks<unsigned long long> unsigned_counted;
};

struct Team {
  int size = 1;
  std::atomic<int> arrived{0}, phase{0}, singles{0};
  std::mutex lock;
  WorkShare shares[kShares];
};

struct Member {
  Team *team = nullptr;
  int id = 0;
  long shares = 0, singles = 0;
  WorkShare *share = nullptr;
};

thread_local Member me;
thread_local Team orphan;  // the team of a loop met outside any region: this thread alone
// The wait for late members: the kernel thread starts within 1 us in 99% of regions.
std::atomic<long> wait_ns{50000};
// Regions launched on the pool, those of them that ran alone after the wait, and regions that
// asked for threads but ran alone without a launch (no pool yet, or on a kernel thread).
std::atomic<long> regions{0}, alone{0}, unlaunched{0};

Team *team() { return me.team ? me.team : &orphan; }

Launch launcher() {
  static const Launch fn = [] {
    void *core = dlopen("libmindspore_core.so", RTLD_NOLOAD | RTLD_NOW);
    return core ? reinterpret_cast<Launch>(dlsym(core, kLaunch)) : nullptr;
  }();
  return fn;
}

void *pool() {
  static void *const *slot = static_cast<void **>(dlsym(RTLD_DEFAULT, "ddpm_kernel_pool"));
  return slot ? __atomic_load_n(slot, __ATOMIC_RELAXED) : nullptr;
}

bool on_kernel_thread() {  // the hook's answer; without the hook there is no pool anyway
  using Ask = int (*)();
  static const Ask ask = reinterpret_cast<Ask>(dlsym(RTLD_DEFAULT, "ddpm_on_kernel_thread"));
  return ask && ask();
}

// MindSpore's kernel threads, counted once from the process's thread names.
int kernel_threads() {
  static const int count = [] {
    int n = 0;
    for (const auto &task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      if (std::getline(comm, name) && name.rfind("KernelThread", 0) == 0) ++n;
    }
    return n;
  }();
  return count;
}

void barrier(Team *t) {
  if (t->size == 1) return;
  const int phase = t->phase.load(std::memory_order_acquire);
  if (t->arrived.fetch_add(1, std::memory_order_acq_rel) == t->size - 1) {
    t->arrived.store(0, std::memory_order_relaxed);
    t->phase.store(phase + 1, std::memory_order_release);
    return;
  }
  for (long spins = 0; t->phase.load(std::memory_order_acquire) == phase; ++spins) {
    relax();
    if (spins > 4096) sched_yield();  // a member was preempted: let it run
  }
}

void run_as(Team *t, int id, void (*fn)(void *), void *data) {
  const Member caller = me;
  me = Member{t, id};
  fn(data);
  me = caller;
}

void run_alone(void (*fn)(void *), void *data) {
  Team solo;
  run_as(&solo, 0, fn, data);
}

// The team's start: the low bits count the members running, kCancelled ends the wait.
struct Start {
  std::atomic<unsigned> word{0};

  bool join() {  // false: the region already ran without this member
    unsigned seen = word.load();
    while (!(seen & kCancelled))
      if (word.compare_exchange_weak(seen, seen + 1)) return true;
    return false;
  }

  enum Outcome { kTeam, kAlone, kSkip };

  // kAlone: this member cancelled the late ones and runs the region by itself; kSkip:
  // another member did.
  Outcome wait(unsigned size) {
    const long deadline = now_ns() + wait_ns.load(std::memory_order_relaxed);
    for (long spins = 0;; ++spins) {
      unsigned seen = word.load(std::memory_order_acquire);
      if (seen == size) return kTeam;
      if (seen & kCancelled) return kSkip;
      relax();
      if ((spins & 127) == 127 && now_ns() > deadline &&
          word.compare_exchange_strong(seen, seen | kCancelled))
        return kAlone;
    }
  }
};

// One parallel region: its team, the team's start, and the work each member runs.
struct Region {
  Team team;
  Start start;
  void (*fn)(void *) = nullptr;
  void *data = nullptr;

  void run(int id) {  // member id's task
    if (!start.join()) return;
    switch (start.wait(team.size)) {
      case Start::kTeam:
        run_as(&team, id, fn, data);
        break;
      case Start::kAlone:
        alone.fetch_add(1, std::memory_order_relaxed);
        run_alone(fn, data);
        break;
      case Start::kSkip:
        break;
    }
  }
};

// The team's next dynamic loop, opened by `open` if this member is the first to reach it.
template <typename Open>
WorkShare *enter_share(Open open) {
  WorkShare *w = &team()->shares[me.shares++ % kShares];
  me.share = w;
  std::lock_guard<std::mutex> hold(team()->lock);
  if (w->generation != me.shares - 1) {
    w->generation = me.shares - 1;
    open(w);
  }
  return w;
}

}  // namespace

HIDDEN void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned) {
  if (me.team || num_threads == 1) {
    run_alone(fn, data);
    return;
  }
  const Launch launch = launcher();
  void *const target = pool();  // known once MindSpore has launched on it, its threads started
  const int size = target ? kernel_threads() + 1 : 1;
  if (size < 2 || !launch || on_kernel_thread()) {
    unlaunched.fetch_add(1, std::memory_order_relaxed);
    run_alone(fn, data);
    return;
  }
  regions.fetch_add(1, std::memory_order_relaxed);
  Region region;
  region.team.size = size;
  region.fn = fn;
  region.data = data;
  // One pointer captured: std::function holds it in place, with no allocation per region.
  const Func task = [r = &region](void *, int id, float, float) {
    r->run(id);
    return 0;
  };
  launch(target, task, nullptr, size);
}

HIDDEN void GOMP_barrier() {
  if (me.team) barrier(me.team);
}

HIDDEN bool GOMP_single_start() {
  if (!me.team || me.team->size == 1) return true;
  int seen = static_cast<int>(me.singles++);
  return me.team->singles.compare_exchange_strong(seen, seen + 1);
}

HIDDEN int omp_get_num_threads() { return me.team ? me.team->size : 1; }
HIDDEN int omp_get_thread_num() { return me.team ? me.id : 0; }
HIDDEN double omp_get_wtime() { return 1e-9 * now_ns(); }

HIDDEN bool GOMP_loop_nonmonotonic_dynamic_next(long *istart, long *iend) {
  return me.share->counted.take(istart, iend);
}

HIDDEN bool GOMP_loop_nonmonotonic_dynamic_start(long start, long end, long incr, long chunk,
                                                 long *istart, long *iend) {
  enter_share([&](WorkShare *w) { w->counted.open(start, end, incr, chunk, incr > 0); });
  return GOMP_loop_nonmonotonic_dynamic_next(istart, iend);
}

HIDDEN bool GOMP_loop_ull_nonmonotonic_dynamic_next(unsigned long long *istart,
                                                    unsigned long long *iend) {
  return me.share->unsigned_counted.take(istart, iend);
}

HIDDEN bool GOMP_loop_ull_nonmonotonic_dynamic_start(bool up, unsigned long long start,
                                                     unsigned long long end,
                                                     unsigned long long incr,
                                                     unsigned long long chunk,
                                                     unsigned long long *istart,
                                                     unsigned long long *iend) {
  enter_share([&](WorkShare *w) { w->unsigned_counted.open(start, end, incr, chunk, up); });
  return GOMP_loop_ull_nonmonotonic_dynamic_next(istart, iend);
}

HIDDEN void GOMP_loop_end() { GOMP_barrier(); }
HIDDEN void GOMP_loop_end_nowait() {}

// The counters above, read by the tests and experiments/cpu_speed.
extern "C" long PoolRegions() { return regions.load(); }
extern "C" long PoolRegionsAlone() { return alone.load(); }
extern "C" long PoolRegionsUnlaunched() { return unlaunched.load(); }

// Sets how long a member waits for the rest of its team before the region runs alone, and
// returns the wait it replaces.
extern "C" long PoolSetWait(long ns) { return wait_ns.exchange(ns); }

// Runs an empty parallel region from the calling thread, as a kernel's would run, and returns
// the members that ran it: MindSpore's kernel threads plus one, or 1 where it ran alone.
extern "C" int PoolTeamSize() {
  std::atomic<int> members{0};
  GOMP_parallel([](void *count) { static_cast<std::atomic<int> *>(count)->fetch_add(1); },
                &members, 0, 0);
  return members.load();
}
