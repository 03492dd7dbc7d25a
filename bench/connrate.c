/*
 * connrate: new-connection rate, for `kernway bench`.
 *
 *   connrate HOST PORT SECONDS THREADS [COUNTFILE]
 *
 * Each of THREADS threads loops until SECONDS have passed:
 *   socket() -> connect() (blocking) -> write "GET / HTTP/1.0\r\n\r\n"
 *   -> read until the server closes -> close()
 * and records the time of that whole cycle. A cycle counts as a success only when the
 * answer starts with "HTTP/1." and the server closed the connection (HTTP/1.0: it
 * does). The server closes first, so TIME_WAIT stays on the server side and the
 * client's ephemeral ports are reusable at once.
 *
 * Prints one JSON object: connections, errors (by kind), elapsed seconds, rate
 * (successful cycles per second) and cycle-time percentiles in microseconds (computed
 * from every cycle, nearest rank).
 *
 * COUNTFILE: a file kept holding the number of successful cycles so far (a 64-bit
 * counter in shared memory, updated after every cycle), so that a benchmark can read the
 * count while the run goes on (bench/tcp-metrics.ts --slice-ms).
 *
 * Built by the benchmark with the machine's cc (cc -O2 -pthread); no dependencies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static volatile uint64_t *live_count; /* COUNTFILE, mapped; NULL without one */

static const char REQUEST[] = "GET / HTTP/1.0\r\nHost: target\r\n\r\n";

struct worker {
	pthread_t tid;
	struct sockaddr_in addr;
	uint64_t deadline_ns;
	uint32_t *samples_us; /* cycle times */
	size_t n, cap;
	uint64_t err_connect, err_io, err_response;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int push(struct worker *w, uint32_t us)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 65536;
		uint32_t *p = realloc(w->samples_us, cap * sizeof(*p));
		if (!p)
			return -1;
		w->samples_us = p;
		w->cap = cap;
	}
	w->samples_us[w->n++] = us;
	return 0;
}

/* One cycle: 0 success, 1 connect error, 2 I/O error, 3 bad response. */
static int cycle(const struct sockaddr_in *addr)
{
	char buf[4096];
	char head[7];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
		close(fd);
		return 1;
	}
	if (write(fd, REQUEST, sizeof(REQUEST) - 1) != (ssize_t)(sizeof(REQUEST) - 1)) {
		close(fd);
		return 2;
	}
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return 2;
		}
		for (ssize_t i = 0; i < r && got + (size_t)i < sizeof(head); i++)
			head[got + (size_t)i] = buf[i];
		got += (size_t)r;
	}
	close(fd);
	return got >= sizeof(head) && memcmp(head, "HTTP/1.", sizeof(head)) == 0 ? 0 : 3;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	while (now_ns() < w->deadline_ns) {
		uint64_t t0 = now_ns();
		int rc = cycle(&w->addr);
		uint64_t t1 = now_ns();
		if (rc == 0) {
			if (push(w, (uint32_t)((t1 - t0) / 1000)) != 0)
				break;
			if (live_count)
				__atomic_fetch_add(live_count, 1, __ATOMIC_RELAXED);
		} else if (rc == 1) {
			w->err_connect++;
		} else if (rc == 2) {
			w->err_io++;
		} else {
			w->err_response++;
		}
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *s, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return s[rank - 1];
}

int main(int argc, char **argv)
{
	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s HOST PORT SECONDS THREADS [COUNTFILE]\n", argv[0]);
		return 2;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET };
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "connrate: HOST must be an IPv4 address, got %s\n", argv[1]);
		return 2;
	}
	int port = atoi(argv[2]);
	double seconds = atof(argv[3]);
	int threads = atoi(argv[4]);
	if (port <= 0 || port > 65535 || seconds <= 0 || seconds > 3600 || threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "connrate: PORT 1-65535, SECONDS (0, 3600], THREADS 1-%d\n", MAX_THREADS);
		return 2;
	}
	addr.sin_port = htons((uint16_t)port);
	if (argc == 6) {
		int cfd = open(argv[5], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		void *m;
		if (cfd < 0 || ftruncate(cfd, sizeof(uint64_t)) != 0 ||
		    (m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0)) == MAP_FAILED) {
			perror("connrate: COUNTFILE");
			return 1;
		}
		close(cfd);
		live_count = m;
		*live_count = 0;
	}

	static struct worker ws[MAX_THREADS];
	uint64_t start = now_ns();
	uint64_t deadline = start + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < threads; i++) {
		ws[i].addr = addr;
		ws[i].deadline_ns = deadline;
		if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
			perror("connrate: pthread_create");
			return 1;
		}
	}
	size_t total = 0;
	uint64_t ec = 0, eio = 0, er = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(ws[i].tid, NULL);
		total += ws[i].n;
		ec += ws[i].err_connect;
		eio += ws[i].err_io;
		er += ws[i].err_response;
	}
	double elapsed = (double)(now_ns() - start) / 1e9;
	uint32_t *all = malloc((total ? total : 1) * sizeof(*all));
	if (!all) {
		perror("connrate: malloc");
		return 1;
	}
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, ws[i].samples_us, ws[i].n * sizeof(*all));
		k += ws[i].n;
		free(ws[i].samples_us);
	}
	qsort(all, total, sizeof(*all), cmp_u32);
	printf("{\"connections\":%zu,\"errors\":{\"connect\":%llu,\"io\":%llu,\"response\":%llu},"
	       "\"seconds\":%.3f,\"threads\":%d,\"rate\":%.1f,"
	       "\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u}\n",
	       total, (unsigned long long)ec, (unsigned long long)eio, (unsigned long long)er,
	       elapsed, threads, (double)total / elapsed,
	       pct(all, total, 50), pct(all, total, 90), pct(all, total, 99), pct(all, total, 99.9));
	free(all);
	return total > 0 ? 0 : 1;
}
