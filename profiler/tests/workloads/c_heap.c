/* A C program with known allocation calls, for the heap collector's exact counters: it
 * prints nothing through stdio (which allocates), only with write(2), so every malloc-family
 * call the process makes is one of these:
 *   keep_malloc:     64 x malloc(1 MiB), kept
 *   churn:           CHURN x (malloc(64) + free)
 *   keep_calloc:     16 x calloc(256, 4096) = 16 MiB, kept
 *   keep_realloc:    one block grown by realloc from 4 KiB to 8 MiB (12 reallocs), kept
 *   keep_memalign:   16 x posix_memalign(4096, 1 MiB), kept
 * Calls: 64 + CHURN + 16 + 1 + 12 + 16 allocations; CHURN frees.
 * Usage: c_heap [SECONDS_TO_WAIT]   (writes "c_heap pid N", then "done", waits, exits) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1 << 20)
#define CHURN 100000

static void *kept[256];
static int nkept;
volatile unsigned long sink;
/* Through a volatile pointer, so the compiler cannot drop a malloc/free pair it sees unused. */
void *volatile escape;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

__attribute__((noinline)) void keep_malloc(void) {
    for (int i = 0; i < 64; i++) kept[nkept++] = malloc(MIB);
}

__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < CHURN; i++) {
        escape = malloc(64);
        free(escape);
    }
}

__attribute__((noinline)) void keep_calloc(void) {
    for (int i = 0; i < 16; i++) kept[nkept++] = calloc(256, 4096);
}

__attribute__((noinline)) void keep_realloc(void) {
    char *p = malloc(4096);
    for (size_t size = 8192; size <= 8 * MIB; size *= 2) p = realloc(p, size);
    kept[nkept++] = p;
}

__attribute__((noinline)) void keep_memalign(void) {
    for (int i = 0; i < 16; i++) {
        void *p = 0;
        if (posix_memalign(&p, 4096, MIB) == 0) kept[nkept++] = p;
    }
}

int main(int argc, char **argv) {
    char line[64];
    int n = 0, pid = getpid(), digits[16], d = 0;
    strcpy(line, "c_heap pid ");
    n = strlen(line);
    do { digits[d++] = pid % 10; pid /= 10; } while (pid);
    while (d) line[n++] = '0' + digits[--d];
    line[n++] = '\n';
    line[n] = 0;
    say(line);
    keep_malloc();
    churn();
    keep_calloc();
    keep_realloc();
    keep_memalign();
    say("done\n");
    if (argc > 1) sleep(atoi(argv[1]));
    sink += (unsigned long)kept[0];
    _exit(0);
}
