/* Backchain's minimal AppImage type-2 runtime: option handling and the run modes. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"

static void usage(const char *argv0)
{
    printf("%s\n\n"
           "Runtime options (everything else is passed to the application):\n"
           "  --appimage-extract [PATTERN]  extract the payload into ./squashfs-root\n"
           "  --appimage-extract-and-run ARGS  extract to a temporary directory, run, clean up\n"
           "  --appimage-mount               mount the payload, print its path, wait for Ctrl-C\n"
           "  --appimage-offset             print the payload's byte offset\n"
           "  --appimage-version            print this runtime's version\n"
           "  --appimage-help               print this help\n"
           "Environment: APPIMAGE_EXTRACT_AND_RUN=1 always extracts instead of mounting.\n",
           RUNTIME_VERSION);
    (void)argv0;
}

/* Extract into a fresh temporary directory, run AppRun there, and remove the directory. */
static int extract_and_run(const char *image, size_t offset, const char *argv0, char **app_argv)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/appimage_extracted_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "appimage: cannot create a directory in %s: %s\n",
                tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return 1;
    }
    if (rt_extract(image, offset, dir, NULL, 0) != 0) {
        rt_remove_tree(dir);
        return 1;
    }
    rt_set_env(image, dir, argv0);
    int status = rt_run_apprun(dir, app_argv);
    /* Keep the tree when asked to, for debugging a failed start. */
    const char *keep = getenv("APPIMAGE_EXTRACT_AND_RUN_NO_CLEANUP");
    if (!(keep && *keep && strcmp(keep, "0") != 0))
        rt_remove_tree(dir);
    return status;
}

int main(int argc, char **argv)
{
    char image[PATH_MAX];
    /* /proc/self/exe names the real file even when started through a symlink or PATH. */
    if (!realpath("/proc/self/exe", image)) {
        fprintf(stderr, "appimage: cannot resolve /proc/self/exe: %s\n", strerror(errno));
        return 1;
    }
    long long off = rt_payload_offset(image);
    if (off < 0)
        return 1;
    size_t offset = (size_t)off;
    const char *arg = argc > 1 ? argv[1] : "";

    if (strcmp(arg, "--appimage-offset") == 0) {
        printf("%lld\n", off);
        return 0;
    }
    if (strcmp(arg, "--appimage-version") == 0) {
        printf("%s\n", RUNTIME_VERSION);
        return 0;
    }
    if (strcmp(arg, "--appimage-help") == 0) {
        usage(argv[0]);
        return 0;
    }
    if (strcmp(arg, "--appimage-extract") == 0) {
        const char *pattern = argc > 2 ? argv[2] : NULL;
        return rt_extract(image, offset, "squashfs-root", pattern, 1) == 0 ? 0 : 1;
    }
    if (strcmp(arg, "--appimage-extract-and-run") == 0)
        return extract_and_run(image, offset, argv[0], argv + 2);
    if (strcmp(arg, "--appimage-mount") == 0) {
        int rc = rt_mount_and_run(image, offset, argv[0], NULL);
        return rc == -2 ? 1 : rc;
    }
    if (strncmp(arg, "--appimage-", 11) == 0) {
        fprintf(stderr, "appimage: unknown runtime option %s (see --appimage-help)\n", arg);
        return 1;
    }

    const char *ear = getenv("APPIMAGE_EXTRACT_AND_RUN");
    if (ear && *ear && strcmp(ear, "0") != 0)
        return extract_and_run(image, offset, argv[0], argv + 1);

    if (rt_fuse_usable()) {
        int rc = rt_mount_and_run(image, offset, argv[0], argv + 1);
        if (rc != -2)
            return rc;
    }
    /* One line, not a failure: many machines deny FUSE to unprivileged users. */
    fprintf(stderr, "appimage: FUSE is not available here; extracting to a temporary "
                    "directory instead (set APPIMAGE_EXTRACT_AND_RUN=1 to skip this notice)\n");
    return extract_and_run(image, offset, argv[0], argv + 1);
}
