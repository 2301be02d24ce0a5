/* Payload location, extraction with libsquashfuse, and running AppRun from a directory. */
#define _GNU_SOURCE
/* squashfuse's config.h defines _POSIX_C_SOURCE; glibc's features.h then overrides it
 * cleanly only when squashfuse comes first. */
#include <squashfuse.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


#include "runtime.h"

long long rt_payload_offset(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "appimage: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    Elf64_Ehdr eh;
    char magic[4];
    long long off = -1;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
        memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "appimage: %s is not a 64-bit ELF file\n", path);
    } else {
        /* The linker writes the section header table last, so the payload starts right
         * after it. */
        off = (long long)eh.e_shoff + (long long)eh.e_shentsize * eh.e_shnum;
        if (pread(fd, magic, 4, off) != 4 || memcmp(magic, "hsqs", 4) != 0) {
            fprintf(stderr, "appimage: no squashfs payload at offset %lld of %s\n", off, path);
            off = -1;
        }
    }
    close(fd);
    return off;
}

/* mkdir -p for the parents of `path`. */
static void make_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
}

static int write_file(sqfs *fs, sqfs_inode *inode, const char *dest, mode_t perm)
{
    static char buf[1 << 20];
    unlink(dest);
    int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, perm | S_IWUSR);
    if (fd < 0) {
        fprintf(stderr, "appimage: cannot create %s: %s\n", dest, strerror(errno));
        return -1;
    }
    sqfs_off_t pos = 0, total = (sqfs_off_t)inode->xtra.reg.file_size;
    while (pos < total) {
        sqfs_off_t n = sizeof buf;
        if (sqfs_read_range(fs, inode, pos, &n, buf) != SQFS_OK || n <= 0) {
            fprintf(stderr, "appimage: cannot read %s from the payload\n", dest);
            close(fd);
            return -1;
        }
        for (sqfs_off_t done = 0; done < n;) {
            ssize_t w = write(fd, buf + done, (size_t)(n - done));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "appimage: cannot write %s: %s\n", dest, strerror(errno));
                close(fd);
                return -1;
            }
            done += w;
        }
        pos += n;
    }
    fchmod(fd, perm);
    return close(fd);
}

static int extract_entry(sqfs *fs, sqfs_traverse *trv, const char *dest, int verbose)
{
    char out[PATH_MAX];
    sqfs_inode inode;
    if (snprintf(out, sizeof out, "%s/%s", dest, trv->path) >= (int)sizeof out) {
        fprintf(stderr, "appimage: path too long: %s\n", trv->path);
        return -1;
    }
    if (sqfs_inode_get(fs, &inode, sqfs_dentry_inode(&trv->entry)) != SQFS_OK) {
        fprintf(stderr, "appimage: cannot read the inode of %s\n", trv->path);
        return -1;
    }
    mode_t type = sqfs_dentry_mode(&trv->entry) & S_IFMT;
    mode_t perm = inode.base.mode & 07777;
    make_parents(out);
    if (verbose)
        printf("%s\n", out);
    if (type == S_IFDIR) {
        /* Owner write stays on so that the tree can be filled and removed again. */
        if (mkdir(out, perm | S_IRWXU) != 0 && errno != EEXIST) {
            fprintf(stderr, "appimage: cannot create %s: %s\n", out, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (type == S_IFREG)
        return write_file(fs, &inode, out, perm);
    if (type == S_IFLNK) {
        char target[PATH_MAX];
        size_t size = sizeof target;
        if (sqfs_readlink(fs, &inode, target, &size) != SQFS_OK) {
            fprintf(stderr, "appimage: cannot read the link %s\n", trv->path);
            return -1;
        }
        unlink(out);
        if (symlink(target, out) != 0) {
            fprintf(stderr, "appimage: cannot create link %s: %s\n", out, strerror(errno));
            return -1;
        }
        return 0;
    }
    return 0; /* devices, fifos and sockets have no place in an AppDir */
}

int rt_extract(const char *image, size_t offset, const char *dest, const char *pattern,
               int verbose)
{
    sqfs fs;
    sqfs_traverse trv;
    sqfs_err err = SQFS_OK;
    int rc = 0;
    if (sqfs_open_image(&fs, image, offset) != SQFS_OK) {
        fprintf(stderr, "appimage: cannot open the payload of %s\n", image);
        return -1;
    }
    if (mkdir(dest, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "appimage: cannot create %s: %s\n", dest, strerror(errno));
        sqfs_destroy(&fs);
        return -1;
    }
    if (sqfs_traverse_open(&trv, &fs, sqfs_inode_root(&fs)) != SQFS_OK) {
        fprintf(stderr, "appimage: cannot list the payload of %s\n", image);
        sqfs_destroy(&fs);
        return -1;
    }
    while (rc == 0 && sqfs_traverse_next(&trv, &err)) {
        if (trv.dir_end)
            continue;
        if (pattern && fnmatch(pattern, trv.path, 0) != 0)
            continue;
        rc = extract_entry(&fs, &trv, dest, verbose);
    }
    if (err != SQFS_OK) {
        fprintf(stderr, "appimage: the payload of %s is damaged\n", image);
        rc = -1;
    }
    sqfs_traverse_close(&trv);
    close(fs.fd);
    sqfs_destroy(&fs);
    return rc;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void rt_remove_tree(const char *dir)
{
    nftw(dir, remove_one, 32, FTW_DEPTH | FTW_PHYS);
}

void rt_set_env(const char *image, const char *appdir, const char *argv0)
{
    char cwd[PATH_MAX];
    setenv("APPIMAGE", image, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv0, 1);
    if (getcwd(cwd, sizeof cwd))
        setenv("OWD", cwd, 1);
}

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig)
{
    if (child_pid > 0)
        kill(child_pid, sig);
}

int rt_run_apprun(const char *appdir, char **app_argv)
{
    char apprun[PATH_MAX];
    snprintf(apprun, sizeof apprun, "%s/AppRun", appdir);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "appimage: fork failed: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        size_t n = 0;
        while (app_argv && app_argv[n])
            n++;
        char **args = calloc(n + 2, sizeof *args);
        if (!args)
            _exit(127);
        args[0] = apprun;
        for (size_t i = 0; i < n; i++)
            args[i + 1] = app_argv[i];
        execv(apprun, args);
        fprintf(stderr, "appimage: cannot run %s: %s\n", apprun, strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    /* The terminal delivers Ctrl-C to the app itself; this process must outlive it to clean
     * up, and pass on a TERM or HUP aimed at it. */
    struct sigaction fwd = {0}, ign = {0};
    fwd.sa_handler = forward_signal;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &fwd, NULL);
    sigaction(SIGHUP, &fwd, NULL);
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGQUIT, &ign, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}
