/* out_dir.h - where the examples that write files (02 to 05) put them: in the
   directory their command line names, by default build/examples (relative
   to where they run, so never into the repository's root), created with its
   parents if missing. Plumbing for the examples only, not part of rlhf.h. */
#ifndef EXAMPLES_OUT_DIR_H
#define EXAMPLES_OUT_DIR_H
#include <errno.h>
#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#include <direct.h>
#define OUT_DIR_MKDIR(p) _mkdir(p)
#else
#include <sys/stat.h>
#define OUT_DIR_MKDIR(p) mkdir(p, 0777)
#endif

#define OUT_DIR_DEFAULT "build/examples"

/* mkdir -p dir: each parent, then dir (one that exists is fine); 0, or -1 with errno */
static int out_dir_make(const char *dir) {
    char p[512];
    size_t i;
    if (!*dir) return errno = ENOENT, -1; /* "" would put dir/name at the filesystem's root */
    if (strlen(dir) >= sizeof p) return errno = ENAMETOOLONG, -1;
    for (i = 0; dir[i]; i++) {
        p[i] = dir[i], p[i + 1] = 0;
        if ((dir[i + 1] == '/' || !dir[i + 1]) && OUT_DIR_MKDIR(p) != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

/* Opens dir/name for writing, creating dir first; its path goes to path (cap
   bytes). NULL, after saying why on stderr, when either cannot be done. */
static FILE *out_open(const char *dir, const char *name, char *path, size_t cap) {
    FILE *f;
    if (out_dir_make(dir) != 0) {
        fprintf(stderr, "cannot create the output directory \"%s\": %s\n", dir, strerror(errno));
        return NULL;
    }
    if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap) {
        fprintf(stderr, "the output directory's name is too long: %s\n", dir);
        return NULL;
    }
    if (!(f = fopen(path, "w"))) fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    return f;
}
#endif
