/*
 * Detects time a CPU was taken away from the guest (a VM's vCPU descheduled by the host),
 * which this kernel does not report as steal (/proc/stat's steal column stays 0 under PVM):
 * the time is charged to whatever task was running, so a proxy's CPU per request rises.
 *
 *   steal-probe CPU PERIOD_US THRESHOLD_US
 *
 * Pinned to CPU at SCHED_FIFO (it preempts any normal task the moment its timer fires), it
 * sleeps to absolute deadlines PERIOD_US apart on CLOCK_MONOTONIC. A wakeup later than
 * THRESHOLD_US means the CPU did not run the guest (or ran it with interrupts off) for that
 * long: it prints `<wall-clock µs since the epoch at wake-up> <lateness µs>` and flushes.
 * At each wake-up it also times a fixed loop of arithmetic (no memory traffic, ~5 µs): a
 * host that runs the vCPU slower (a busy sibling hyperthread, a lower clock) makes it
 * longer without taking the CPU away; and at every fourth one, 32 dependent loads at random
 * over 32 MiB (the caches and memory the host shares with its other guests) and 8 system
 * calls (getppid: on this PVM guest every system call goes through the host), and the loop's
 * multiplies in 8 independent chains (throughput-bound: slowed by a busy sibling hyperthread,
 * which the dependent chain hardly feels). Once a second it prints `s <wall-clock µs> <median
 * loop ns> <loops> <median loads ns> <median calls ns> <median wide loop ns>`.
 * Runs until killed, or until the process that started it ends (a bench that crashed does
 * not leave a SCHED_FIFO task behind). Built and started by bench/waypoint/steal.ts.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long ns(const struct timespec *t) { return (long long)t->tv_sec * 1000000000LL + t->tv_nsec; }

#define LOOP 4000
static volatile unsigned long long sink;

/* The fixed work: a dependent chain of multiplies and adds the compiler cannot fold. */
static long long timed_loop(void) {
  struct timespec a, b;
  unsigned long long x = sink | 1;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < LOOP; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  clock_gettime(CLOCK_MONOTONIC, &b);
  sink = x;
  return ns(&b) - ns(&a);
}

#define CHASE_BYTES (32u << 20)
#define LINE 64
#define LOADS 32
#define CALLS 8
static size_t *chase;
static size_t at;

/* A random cycle through every cache line of the buffer: each load's address is the one before's value. */
static void chase_init(void) {
  size_t n = CHASE_BYTES / LINE, stride = LINE / sizeof(size_t);
  chase = malloc(CHASE_BYTES);
  size_t *order = malloc(n * sizeof(size_t));
  if (!chase || !order) { perror("steal-probe: malloc"); exit(1); }
  for (size_t i = 0; i < n; i++) order[i] = i;
  srand(42);
  for (size_t i = n - 1; i > 0; i--) { size_t j = (size_t)rand() % (i + 1), t = order[i]; order[i] = order[j]; order[j] = t; }
  for (size_t i = 0; i < n; i++) chase[order[i] * stride] = order[(i + 1) % n] * stride;
  free(order);
}

static long long timed_loads(void) {
  struct timespec a, b;
  size_t p = at;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < LOADS; i++) p = chase[p];
  clock_gettime(CLOCK_MONOTONIC, &b);
  at = p;
  return ns(&b) - ns(&a);
}

static long long timed_calls(void) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < CALLS; i++) syscall(SYS_getppid);
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ns(&b) - ns(&a);
}

/*
 * The same multiplies in 8 independent chains: bound by how many the core issues per cycle,
 * not by their latency, so a sibling hyperthread busy on the host (another guest's work on
 * the same core) slows it where it hardly slows the dependent chain above.
 */
static long long timed_wide(void) {
  struct timespec a, b;
  unsigned long long x0 = sink | 1, x1 = x0 + 2, x2 = x0 + 4, x3 = x0 + 6, x4 = x0 + 8, x5 = x0 + 10, x6 = x0 + 12, x7 = x0 + 14;
  const unsigned long long m = 6364136223846793005ULL, c = 1442695040888963407ULL;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < LOOP / 2; i++) {
    x0 = x0 * m + c; x1 = x1 * m + c; x2 = x2 * m + c; x3 = x3 * m + c;
    x4 = x4 * m + c; x5 = x5 * m + c; x6 = x6 * m + c; x7 = x7 * m + c;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  sink = x0 ^ x1 ^ x2 ^ x3 ^ x4 ^ x5 ^ x6 ^ x7;
  return ns(&b) - ns(&a);
}

static int cmp(const void *a, const void *b) { long long x = *(const long long *)a, y = *(const long long *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: steal-probe CPU PERIOD_US THRESHOLD_US\n"); return 2; }
  /* Ends with its parent; and if the parent was already gone (adopted by init), at once. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1) return 1;
  int cpu = atoi(argv[1]);
  long long period = atoll(argv[2]) * 1000LL, threshold = atoll(argv[3]) * 1000LL;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("steal-probe: sched_setaffinity"); return 1; }
  struct sched_param sp = { .sched_priority = 50 };
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) { perror("steal-probe: SCHED_FIFO"); return 1; }
  chase_init();
  printf("ready %d\n", cpu);
  fflush(stdout);
  struct timespec next, now, wall;
  long long loops[1024], loads[1024], calls[1024], wides[1024];
  int nloops = 0, nloads = 0;
  long long per_second = 1000000000LL / period > 1024 ? 1024 : 1000000000LL / period;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    long long d = ns(&next) + period;
    next.tv_sec = d / 1000000000LL;
    next.tv_nsec = d % 1000000000LL;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0) { }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long late = ns(&now) - ns(&next);
    if (late > threshold) {
      clock_gettime(CLOCK_REALTIME, &wall);
      printf("%lld %lld\n", ns(&wall) / 1000, late / 1000);
      fflush(stdout);
    }
    if (late > period) next = now; /* missed deadlines: start again from now */
    loops[nloops++] = timed_loop();
    if (nloops % 4 == 0) { loads[nloads] = timed_loads(); calls[nloads] = timed_calls(); wides[nloads++] = timed_wide(); }
    if (nloops >= per_second) {
      qsort(loops, nloops, sizeof loops[0], cmp);
      qsort(loads, nloads, sizeof loads[0], cmp);
      qsort(calls, nloads, sizeof calls[0], cmp);
      qsort(wides, nloads, sizeof wides[0], cmp);
      clock_gettime(CLOCK_REALTIME, &wall);
      printf("s %lld %lld %d %lld %lld %lld\n", ns(&wall) / 1000, loops[nloops / 2], nloops, nloads ? loads[nloads / 2] : -1, nloads ? calls[nloads / 2] : -1, nloads ? wides[nloads / 2] : -1);
      fflush(stdout);
      nloops = nloads = 0;
    }
  }
}
