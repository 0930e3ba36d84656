/* label_pty.c - `rlhf label`'s terminal mode driven through a pseudo-terminal (forkpty): keystrokes
   in, the screen read back, the files checked by tests/cli_label.sh, the terminal restored on exit.

   usage: label_pty RLHF POLICY PROMPTS DIR
   Writes DIR/pty_demos.jsonl, DIR/pty_rank.jsonl, DIR/pty_compare.jsonl; exits non-zero when a check
   fails. Where forkpty is missing it says so and exits 0 (cli_label.sh then skips its checks). */
#define _DEFAULT_SOURCE
#if defined(__linux__)
#include <pty.h>
#define HAVE_FORKPTY 1
#elif defined(__APPLE__)
#include <util.h>
#define HAVE_FORKPTY 1
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef HAVE_FORKPTY
int main(void) {
    printf("label_pty: no forkpty on this system: skipped\n");
    return 0;
}
#else
static int failures;
#define CHECK(cond, ...) \
    do { if (!(cond)) { failures++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

typedef struct child {
    pid_t pid;
    int fd;
    char *out;      /* everything the program wrote to the terminal */
    size_t n, cap;
    size_t seen;    /* wait_for searches from here: text of earlier frames does not count */
} child;

static void spawn(child *c, char **argv, int rows, int cols) {
    struct winsize ws;
    memset(c, 0, sizeof *c);
    memset(&ws, 0, sizeof ws);
    ws.ws_row = (unsigned short)rows, ws.ws_col = (unsigned short)cols;
    c->pid = forkpty(&c->fd, NULL, NULL, &ws);
    if (c->pid < 0) {
        perror("label_pty: forkpty");
        exit(1);
    }
    if (c->pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
}
/* what the program wrote within ms milliseconds; 0 at its end */
static int pump(child *c, int ms) {
    struct pollfd p;
    char buf[4096];
    ssize_t r;
    p.fd = c->fd, p.events = POLLIN;
    if (poll(&p, 1, ms) <= 0) return 1;
    r = read(c->fd, buf, sizeof buf);
    if (r <= 0) return 0; /* EIO: the program closed the terminal */
    if (c->n + (size_t)r + 1 > c->cap) {
        c->cap = 2 * (c->n + (size_t)r + 1);
        c->out = (char *)realloc(c->out, c->cap);
        if (!c->out) exit(1);
    }
    memcpy(c->out + c->n, buf, (size_t)r);
    c->n += (size_t)r;
    c->out[c->n] = 0;
    return 1;
}
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* 1 when text appears in the program's output after c->seen within 60 s; then seen moves past it */
static int wait_for(child *c, const char *text) {
    double t0 = now();
    while (now() - t0 < 60.0) {
        char *at = c->out ? strstr(c->out + c->seen, text) : NULL;
        if (at) {
            c->seen = (size_t)(at - c->out) + strlen(text);
            return 1;
        }
        if (!pump(c, 100)) break;
    }
    printf("label_pty: waited for \"%s\"; the program wrote (last 600 bytes):\n%s\n", text, c->n > 600 ? c->out + c->n - 600 : c->out ? c->out : "");
    return 0;
}
static void keys(child *c, const char *k) {
    size_t n = strlen(k);
    if (write(c->fd, k, n) != (ssize_t)n) perror("label_pty: write");
}
/* LLVM's OpenMP runtime (clang builds) registers each process in /dev/shm and removes the entry in exit(); a
 * program stopped by a signal leaves through _exit, the entry stays, and once /dev/shm is full every program
 * started with that runtime dies of SIGBUS. Tidy up after each child (nothing to do after a plain exit). */
static void forget_exited(pid_t pid) {
    char name[96];
    snprintf(name, sizeof name, "/dev/shm/__KMP_REGISTERED_LIB_%ld_%ld", (long)pid, (long)getuid());
    unlink(name);
}
/* the exit status (128 + signal for a signal), after reading the program's last output */
static int finish(child *c, struct termios *after, int *have_after) {
    int status = 0;
    double t0 = now();
    while (pump(c, 100) && now() - t0 < 60.0) {}
    *have_after = tcgetattr(c->fd, after) == 0;
    waitpid(c->pid, &status, 0);
    close(c->fd);
    forget_exited(c->pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
/* the alternate screen was left after it was last entered, and the terminal is cooked again */
static void check_restored(const char *what, const child *c, const struct termios *t, int have) {
    const char *enter = NULL, *leave = NULL, *p;
    for (p = c->out; p && (p = strstr(p, "\033[?1049h")) != NULL; p++) enter = p;
    for (p = c->out; p && (p = strstr(p, "\033[?1049l")) != NULL; p++) leave = p;
    CHECK(enter && leave && leave > enter, "%s: the alternate screen was not left on exit", what);
    CHECK(c->out && strstr(c->out, "\033[?25h") != NULL, "%s: the cursor was not shown again", what);
    if (have) CHECK((t->c_lflag & ECHO) && (t->c_lflag & ICANON), "%s: the terminal is still in raw mode after exit", what);
}

/* rlhf label MODE --prompts PROMPTS --out DIR/FILE --labeller pty [--policy POLICY] EXTRA... in a terminal of rows x cols */
static void start(child *c, char **base, const char *dir, const char *mode, const char *file, const char *extra, int rows, int cols) {
    static char out[1100], words[256];
    char *argv[24], *w;
    int n = 0;
    snprintf(out, sizeof out, "%s/%s", dir, file);
    snprintf(words, sizeof words, "%s", extra);
    argv[n++] = base[0], argv[n++] = "label", argv[n++] = (char *)mode, argv[n++] = "--prompts", argv[n++] = base[1];
    argv[n++] = "--out", argv[n++] = out, argv[n++] = "--labeller", argv[n++] = "pty";
    if (strcmp(mode, "demos") != 0) argv[n++] = "--policy", argv[n++] = base[2];
    for (w = strtok(words, " "); w && n < 23; w = strtok(NULL, " ")) argv[n++] = w;
    argv[n] = NULL;
    spawn(c, argv, rows, cols);
}
/* the run's end: its exit status as expected, the terminal given back */
static void stop(child *c, const char *what, int want) {
    struct termios t;
    int have, st = finish(c, &t, &have);
    CHECK(st == want, "%s: exit status %d (expected %d)", what, st, want);
    check_restored(what, c, &t, have);
    free(c->out);
}

/* demos: typing with a multi-byte character, Backspace over it, Up, Enter, Ctrl-D; skip, undo, quit */
static void test_demos(char **base, const char *dir) {
    child c;
    start(&c, base, dir, "demos", "pty_demos.jsonl", "", 24, 80);
    CHECK(wait_for(&c, "prompt 1 of"), "demos: no first prompt");
    keys(&c, "ab\xC3\xA7"); /* "abç": Backspace must take both bytes of the ç */
    keys(&c, "\x7f" "c\rsecond");
    keys(&c, "\033[A!"); /* Up: to line 1 at column min(6, 3), the end of "abc" */
    CHECK(wait_for(&c, "second"), "demos: the typed text is not on screen");
    {   /* a resize redraws: the title comes again without any key */
        struct winsize ws;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = 30, ws.ws_col = 100;
        ioctl(c.fd, TIOCSWINSZ, &ws);
        CHECK(wait_for(&c, "rlhf label demos | prompt 1 of"), "demos: no redraw after a resize");
    }
    keys(&c, "\x04"); /* Ctrl-D: submit */
    CHECK(wait_for(&c, "prompt 2 of"), "demos: prompt 2 did not follow the submitted reply");
    keys(&c, "\x13"); /* Ctrl-S: skip prompt 2 */
    CHECK(wait_for(&c, "prompt 3 of"), "demos: prompt 3 did not follow the skip");
    keys(&c, "\x15"); /* Ctrl-U: the skip undone, prompt 2 again */
    CHECK(wait_for(&c, "prompt 2 of"), "demos: undo did not bring back prompt 2");
    keys(&c, "\x11"); /* Ctrl-Q */
    stop(&c, "demos", 0);
}
/* rank: select, move up, score, flag, Enter (twice: the order was touched, once is enough); then a typed order */
static void test_rank(char **base, const char *dir) {
    child c;
    start(&c, base, dir, "rank", "pty_rank.jsonl", "--k 3 --max-new 8", 40, 100);
    CHECK(wait_for(&c, "Order, best first"), "rank: no first item");
    keys(&c, "\033[B+>>h\r"); /* reply 2 selected, moved to first place, scored 2, flagged hallucination; submitted */
    CHECK(wait_for(&c, "prompt 2 of"), "rank: prompt 2 did not follow");
    keys(&c, "39\x7f"); /* an order typed, a wrong digit erased */
    keys(&c, "21");
    CHECK(wait_for(&c, "order: 321_"), "rank: the typed order is not shown");
    keys(&c, "\r");
    CHECK(wait_for(&c, "prompt 3 of"), "rank: prompt 3 did not follow the typed order");
    keys(&c, "q");
    stop(&c, "rank", 0);
}
/* compare: 2 is the better reply; then SIGTERM with an item on screen: 143, the terminal restored */
static void test_compare(char **base, const char *dir) {
    child c;
    start(&c, base, dir, "compare", "pty_compare.jsonl", "--max-new 8", 24, 80);
    CHECK(wait_for(&c, "[2]"), "compare: no first item");
    keys(&c, "?");
    CHECK(wait_for(&c, "Tie-breaking"), "compare: ? did not show the guidelines");
    keys(&c, " "); /* any key: back */
    CHECK(wait_for(&c, "[2]"), "compare: no way back from the guidelines");
    keys(&c, "2");
    CHECK(wait_for(&c, "prompt 2 of"), "compare: prompt 2 did not follow");
    kill(c.pid, SIGTERM);
    stop(&c, "compare after SIGTERM", 143);
}

int main(int argc, char **argv) {
    char *base[3];
    if (argc != 5) {
        fprintf(stderr, "usage: label_pty RLHF POLICY PROMPTS DIR\n");
        return 2;
    }
    base[0] = argv[1], base[1] = argv[3], base[2] = argv[2];
    test_demos(base, argv[4]);
    test_rank(base, argv[4]);
    test_compare(base, argv[4]);
    if (failures) {
        printf("label_pty: %d checks failed\n", failures);
        return 1;
    }
    printf("label_pty: demos, rank and compare through a pseudo-terminal ok (keys, resize, guidelines, SIGTERM, screen restored)\n");
    return 0;
}
#endif
