/* atomic_file.h - files the rlhf tool writes, written whole or not at all.

   A file is written to "PATH.tmp-PID" beside its target, flushed, fsync'ed,
   then renamed over PATH: a reader (or a crash, a kill, a full disk) sees
   the old file or the new one, never a part. POSIX. Used by tools/rlhf.c
   and tools/plot.h.

       atomic_file a;
       FILE *f = atomic_open(&a, "run/report.json");
       if (!f) ... errno says why
       fprintf(f, ...);
       if (atomic_commit(&a) != 0) ... errno says why; the old file is intact */
#ifndef RLHF_ATOMIC_FILE_H
#define RLHF_ATOMIC_FILE_H
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct atomic_file {
    FILE *f;
    char path[1024], tmp[1100];
} atomic_file;

static FILE *atomic_open(atomic_file *a, const char *path) {
    a->f = NULL;
    if (strlen(path) >= sizeof a->path) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    snprintf(a->path, sizeof a->path, "%s", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp-%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    return a->f;
}
/* drop the temporary file; the target is untouched */
static void atomic_abort(atomic_file *a) {
    if (!a->f) return;
    fclose(a->f);
    remove(a->tmp);
    a->f = NULL;
}
/* 0 when the new file is in place; -1 (errno set) when not: the old file stays */
static int atomic_commit(atomic_file *a) {
    int failed, saved;
    if (!a->f) return -1;
    failed = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    saved = errno;
    if (fclose(a->f) != 0 && !failed) failed = 1, saved = errno;
    a->f = NULL;
    if (!failed && rename(a->tmp, a->path) != 0) failed = 1, saved = errno;
    if (failed) {
        remove(a->tmp);
        errno = saved ? saved : EIO;
        return -1;
    }
    return 0;
}
#endif
