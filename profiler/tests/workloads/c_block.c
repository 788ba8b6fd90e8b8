/* A C workload that blocks with a known call structure, for off-CPU unwinding tests: top()
 * calls mid_a(), which sleeps in leaf() once, then mid_b(), which sleeps in leaf() twice, so
 * the blocked time splits 1/3 under mid_a and 2/3 under mid_b. Built with `gcc -O2` it keeps
 * no frame pointers, and it blocks inside glibc's clock_nanosleep wrapper, which keeps none
 * either: a frame-pointer walk cannot find its callers.
 * Usage: c_block SECONDS   (prints "c_block pid N" first) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline, noclone)) unsigned long leaf(unsigned long x) {
    struct timespec ts = {0, 4 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return x * 6364136223846793005UL + 1442695040888963407UL;
}

__attribute__((noinline, noclone)) unsigned long mid_a(unsigned long x) {
    return leaf(x) ^ 1;
}

__attribute__((noinline, noclone)) unsigned long mid_b(unsigned long x) {
    x = leaf(x);
    return leaf(x) ^ 2;
}

/* `+ 1`: no tail call, so top stays on the stack under mid_b. */
__attribute__((noinline, noclone)) unsigned long top(unsigned long x) {
    return mid_b(mid_a(x)) + 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 5.0;
    printf("c_block pid %d\n", (int)getpid());
    fflush(stdout);
    unsigned long v = 1;
    double end = now() + secs;
    while (now() < end)
        v = top(v);
    sink = v;
    return 0;
}
