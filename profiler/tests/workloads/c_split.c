/* A C workload with a known call structure, for stack-health and unwinding tests:
 * top() calls mid_a(), which calls leaf() once, then mid_b(), which calls leaf() twice, so
 * leaf's time splits 1/3 under mid_a and 2/3 under mid_b. Built with `gcc -O2` it has no
 * frame pointers (the compiler's default), which is the point.
 * Usage: c_split SECONDS   (prints "c_split pid N" first) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline, noclone)) unsigned long leaf(unsigned long x, int n) {
    for (int i = 0; i < n; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    return x;
}

__attribute__((noinline, noclone)) unsigned long mid_a(unsigned long x, int n) {
    return leaf(x, n) ^ 1;
}

__attribute__((noinline, noclone)) unsigned long mid_b(unsigned long x, int n) {
    x = leaf(x, n);
    return leaf(x, n) ^ 2;
}

/* The length of one round varies at random (100k..300k iterations per leaf call, the same
 * for its three calls, so the 1/3 : 2/3 split holds in every round). With a fixed length a
 * round took ~0.97 ms here, next to a 999 Hz sampling period: the samples fell at nearly the
 * same phase of each round and both our recorder and perf saw mid_a off by 2-5 points.
 * `+ 1`: no tail call, so top stays on the stack under mid_b. */
__attribute__((noinline, noclone)) unsigned long top(unsigned long x) {
    static unsigned long rng = 0x9E3779B97F4A7C15UL;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int n = 100000 + (int)(rng % 200000);
    return mid_b(mid_a(x, n), n) + 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 5.0;
    printf("c_split pid %d\n", (int)getpid());
    fflush(stdout);
    unsigned long v = 1;
    double end = now() + secs;
    while (now() < end)
        v = top(v);
    sink = v;
    return 0;
}
