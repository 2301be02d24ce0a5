/* Backchain's minimal AppImage type-2 runtime: shared declarations. */
#ifndef BACKCHAIN_RUNTIME_H
#define BACKCHAIN_RUNTIME_H

#include <stddef.h>
#include <sys/types.h>

#define RUNTIME_VERSION "backchain-runtime 1 (AppImage type 2)"

/* Offset of the squashfs image appended to the ELF file at `path`, or -1 with a message. */
long long rt_payload_offset(const char *path);

/* Extract the squashfs at `image`+`offset` into `dest`. Entries whose path does not match
 * `pattern` (fnmatch) are skipped when pattern is non-NULL. `verbose` prints each path.
 * Returns 0 on success. */
int rt_extract(const char *image, size_t offset, const char *dest, const char *pattern,
               int verbose);

/* Remove a directory tree; used to clean up after extract-and-run. */
void rt_remove_tree(const char *dir);

/* Whether a FUSE mount can be attempted (device usable, helper present when unprivileged). */
int rt_fuse_usable(void);

/* Mount the image at a fresh directory, run AppRun in a child, serve FUSE until the child
 * exits, unmount, and return the child's exit status. Returns -2 when the mount itself failed
 * (caller falls back to extract-and-run). With `app_argv` NULL, only print the mount point
 * and serve until interrupted (--appimage-mount). */
int rt_mount_and_run(const char *image, size_t offset, const char *argv0, char **app_argv);

/* Set APPIMAGE, APPDIR, ARGV0, OWD in the environment, as AppImage runtimes do. */
void rt_set_env(const char *image, const char *appdir, const char *argv0);

/* Fork, exec appdir/AppRun with args, wait, and return an exit status (128+sig if killed). */
int rt_run_apprun(const char *appdir, char **app_argv);

#endif
