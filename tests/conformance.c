/* JSON conformance: runs rlhf_json_parse on every file of JSONTestSuite's
   test_parsing folder (nst/JSONTestSuite; a copy lives in
   ../shared/testdata, never in this repository). y_ files must parse, n_
   files must be rejected, i_ files may go either way but must not crash.
   `make conformance` builds this with ASan + UBSan so a crash or an
   out-of-bounds read also fails. Exit status: 0 when every y_ and n_ file
   behaves, 1 otherwise, 2 when the folder cannot be read.
   Usage: conformance [DIR] [-v] */
#define _POSIX_C_SOURCE 200809L
#define RLHF_IMPLEMENTATION
#include "../rlhf.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *dir = "../shared/testdata/JSONTestSuite/test_parsing";
    int verbose = 0, i, n = 0, y_ok = 0, y_n = 0, n_ok = 0, n_n = 0, i_acc = 0, i_n = 0, bad = 0;
    char *names[1024];
    DIR *d;
    struct dirent *e;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) verbose = 1;
        else dir = argv[i];
    }
    d = opendir(dir);
    if (!d) {
        fprintf(stderr, "conformance: cannot open %s\n", dir);
        return 2;
    }
    while ((e = readdir(d)) != NULL && n < 1024)
        if (strlen(e->d_name) > 5 && strcmp(e->d_name + strlen(e->d_name) - 5, ".json") == 0) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    for (i = 0; i < n; i++) {
        char path[4096];
        FILE *f;
        long len;
        char *buf;
        rlhf_json_doc *doc = NULL;
        rlhf_json_error err;
        rlhf_result r;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        f = fopen(path, "rb");
        if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
            fprintf(stderr, "conformance: cannot read %s\n", path);
            return 2;
        }
        /* an exact-size heap copy: ASan sees any read past the end */
        buf = (char *)malloc((size_t)len + (len == 0));
        if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) return 2;
        fclose(f);
        r = rlhf_json_parse(&doc, buf, (size_t)len, 0, &err);
        rlhf_json_free(doc);
        free(buf);
        if (names[i][0] == 'y') {
            y_n++;
            if (r == RLHF_OK) y_ok++;
            else { bad = 1; printf("WRONG  %s rejected: %zu:%zu: %s\n", names[i], err.line, err.column, err.message); }
        } else if (names[i][0] == 'n') {
            n_n++;
            if (r != RLHF_OK) n_ok++;
            else { bad = 1; printf("WRONG  %s accepted\n", names[i]); }
        } else {
            i_n++;
            i_acc += r == RLHF_OK;
        }
        if (verbose) printf("%-8s %s%s%s\n", r == RLHF_OK ? "accept" : "reject", names[i], r == RLHF_OK ? "" : "  ", r == RLHF_OK ? "" : err.message);
        free(names[i]);
    }
    printf("JSONTestSuite: y_ accepted %d/%d, n_ rejected %d/%d, i_ accepted %d/%d (either is allowed), %d files, no crash\n",
           y_ok, y_n, n_ok, n_n, i_acc, i_n, n);
    return bad ? 1 : 0;
}
