/* FUSE mode: serve the payload with libsquashfuse's low-level ops while AppRun runs. */
#define _GNU_SOURCE
/* squashfuse's config.h defines _POSIX_C_SOURCE; glibc's features.h then overrides it
 * cleanly only when squashfuse comes first. */
#include <squashfuse.h>
#include <ll.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse3/fuse_log.h>

#include "runtime.h"

static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path, name);
        if (access(buf, X_OK) == 0)
            return 1;
        path += len + (path[len] == ':');
    }
    return access("/bin/fusermount3", X_OK) == 0 || access("/usr/bin/fusermount3", X_OK) == 0;
}

int rt_fuse_usable(void)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    close(fd);
    /* Without root, libfuse mounts through the setuid fusermount3 helper. */
    return geteuid() == 0 || on_path("fusermount3");
}

static void quiet_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
    /* A failed mount is followed by the fallback notice; libfuse's own lines would only
     * repeat it. */
    (void)level, (void)fmt, (void)ap;
}

static void *serve(void *arg)
{
    fuse_session_loop((struct fuse_session *)arg);
    return NULL;
}

static void fill_ops(struct fuse_lowlevel_ops *ops)
{
    memset(ops, 0, sizeof *ops);
    ops->getattr = sqfs_ll_op_getattr;
    ops->opendir = sqfs_ll_op_opendir;
    ops->releasedir = sqfs_ll_op_releasedir;
    ops->readdir = sqfs_ll_op_readdir;
    ops->lookup = sqfs_ll_op_lookup;
    ops->open = sqfs_ll_op_open;
    ops->create = sqfs_ll_op_create;
    ops->release = sqfs_ll_op_release;
    ops->read = sqfs_ll_op_read;
    ops->readlink = sqfs_ll_op_readlink;
    ops->listxattr = sqfs_ll_op_listxattr;
    ops->getxattr = sqfs_ll_op_getxattr;
    ops->forget = sqfs_ll_op_forget;
    ops->statfs = stfs_ll_op_statfs;
}

int rt_mount_and_run(const char *image, size_t offset, const char *argv0, char **app_argv)
{
    char mnt[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    snprintf(mnt, sizeof mnt, "%s/.mount_%.6sXXXXXX", tmp && *tmp ? tmp : "/tmp", base);
    if (!mkdtemp(mnt))
        return -2;

    sqfs_ll *ll = sqfs_ll_open(image, offset);
    if (!ll) {
        rmdir(mnt);
        return -2;
    }
    char *fargv[] = {(char *)"appimage", (char *)"-o", (char *)"ro,nodev,nosuid", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse_lowlevel_ops ops;
    fill_ops(&ops);
    sqfs_ll_chan ch;
    fuse_set_log_func(quiet_log);
    if (sqfs_ll_mount(&ch, mnt, &args, &ops, sizeof ops, ll) != SQFS_OK) {
        rmdir(mnt);
        return -2;
    }
    fuse_set_log_func(NULL);
    struct fuse_session *se = ch.session;
    /* The app must not inherit the FUSE device. */
    fcntl(fuse_session_fd(se), F_SETFD, FD_CLOEXEC);

    /* Block the stop signals before starting the server thread so it never takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    pthread_t server;
    pthread_create(&server, NULL, serve, se);

    int status = 0;
    rt_set_env(image, mnt, argv0);
    if (app_argv) {
        pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
        status = rt_run_apprun(mnt, app_argv);
    } else {
        int sig;
        printf("%s\n", mnt);
        fflush(stdout);
        sigwait(&stop, &sig);
    }
    /* Unmounting aborts the connection, which ends the server thread's blocking read. */
    fuse_session_exit(se);
    fuse_session_unmount(se);
    pthread_join(server, NULL);
    fuse_session_destroy(se);
    rmdir(mnt);
    return status;
}
