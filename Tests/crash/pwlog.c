// SPDX-License-Identifier: Apache-2.0
/* A write recorder for the power-cut test (Tests/crash/powercut.py), loaded with LD_PRELOAD.
 *
 * It logs, in the order the kernel saw them, every write, zeroing, size change, sync, rename and
 * unlink a program makes to files under CBD_PWLOG_DIR, with the bytes written, to the file
 * CBD_PWLOG (appended, one write(2) per record, so several processes can share it). The test
 * then builds the states a power cut could leave from that log. Nothing here changes what the
 * program does: each call goes to libc first and is logged only when it succeeded.
 *
 * Record: u8 op, u8 pad[3], u32 path length, u32 data length, u64 inode, u64 a, u64 b, then the
 * path (for R: old, NUL, new) and the data. Ops: W write (a = offset, data), Z zero or punch
 * (a = offset, b = length), T size (a = size), S fsync or fdatasync of an inode, G sync(2) or
 * syncfs, R rename, U unlink.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static const char *dir;
static size_t dir_len;

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

static ssize_t raw_write(int fd, const void *buf, size_t count) {
    REAL(write);
    return real_write(fd, buf, count);
}

static ssize_t raw_pread(int fd, void *buf, size_t count, off_t offset) {
    REAL(pread);
    return real_pread(fd, buf, count, offset);
}

/* Whether the log is open (it is opened the first time). */
static int ready(void) {
    if (!dir) {
        dir = getenv("CBD_PWLOG_DIR");
        const char *log = getenv("CBD_PWLOG");
        if (!dir || !log) { dir = ""; return 0; }
        dir_len = strlen(dir);
        REAL(open);
        log_fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    return log_fd >= 0 && dir_len > 0;
}

/* Whether `path` (absolute, resolved) lies under CBD_PWLOG_DIR. */
static int watched(const char *path) {
    return ready() && strncmp(path, dir, dir_len) == 0
        && (path[dir_len] == '/' || path[dir_len] == 0);
}

static int fd_path(int fd, char *out) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n < 0) return 0;
    out[n] = 0;
    return watched(out);
}

static void emit(char op, const char *path, size_t path_len, uint64_t ino, uint64_t a, uint64_t b,
                 const void *data, size_t data_len) {
    size_t total = 40 + path_len + data_len;
    unsigned char *r = malloc(total);
    if (!r) abort();
    uint32_t pl = (uint32_t) path_len, dl = (uint32_t) data_len;
    memset(r, 0, 40);
    r[0] = (unsigned char) op;
    memcpy(r + 4, &pl, 4);
    memcpy(r + 8, &dl, 4);
    memcpy(r + 16, &ino, 8);
    memcpy(r + 24, &a, 8);
    memcpy(r + 32, &b, 8);
    memcpy(r + 40, path, path_len);
    if (data_len) memcpy(r + 40 + path_len, data, data_len);
    if (raw_write(log_fd, r, total) != (ssize_t) total) abort();
    free(r);
}

/* Logs an operation on fd, if its file is watched. Called with `lock` held. */
static void on_fd(char op, int fd, uint64_t a, uint64_t b, const void *data, size_t len) {
    char path[PATH_MAX];
    struct stat st;
    if (!fd_path(fd, path) || fstat(fd, &st) != 0) return;
    /* The states rebuilt are the files of CBD_PWLOG_DIR: its own sync stays (a barrier for its
       names), a subfolder's is left out (fsck.cbd syncs its lost+found after each file it saves,
       and that read as the creation of a file of the folder's name). */
    if (S_ISDIR(st.st_mode) && path[dir_len] != 0) return;
    emit(op, path, strlen(path), (uint64_t) st.st_ino, a, b, data, len);
}

/* Logs the bytes now at [offset, offset + len) of fd: what a copy_file_range put there. */
static void on_copied(int fd, off_t offset, size_t len) {
    void *buf = malloc(len ? len : 1);
    if (!buf) abort();
    if (raw_pread(fd, buf, len, offset) == (ssize_t) len) on_fd('W', fd, (uint64_t) offset, 0, buf, len);
    free(buf);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite);
    pthread_mutex_lock(&lock);
    ssize_t n = real_pwrite(fd, buf, count, offset);
    if (n > 0) on_fd('W', fd, (uint64_t) offset, 0, buf, (size_t) n);
    pthread_mutex_unlock(&lock);
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) { return pwrite(fd, buf, count, offset); }

ssize_t write(int fd, const void *buf, size_t count) {
    if (fd == log_fd) return raw_write(fd, buf, count);
    pthread_mutex_lock(&lock);
    off_t at = lseek(fd, 0, SEEK_CUR);
    ssize_t n = raw_write(fd, buf, count);
    if (n > 0 && at >= 0) on_fd('W', fd, (uint64_t) at, 0, buf, (size_t) n);
    pthread_mutex_unlock(&lock);
    return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(pwritev);
    pthread_mutex_lock(&lock);
    ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
    if (n > 0) on_copied(fd, offset, (size_t) n);
    pthread_mutex_unlock(&lock);
    return n;
}

ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t len, unsigned flags) {
    REAL(copy_file_range);
    pthread_mutex_lock(&lock);
    off_t at = out_off ? *out_off : lseek(out, 0, SEEK_CUR);
    ssize_t n = real_copy_file_range(in, in_off, out, out_off, len, flags);
    if (n > 0) on_copied(out, at, (size_t) n);
    pthread_mutex_unlock(&lock);
    return n;
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    REAL(fallocate);
    pthread_mutex_lock(&lock);
    int r = real_fallocate(fd, mode, offset, len);
    if (r == 0) {
        /* Punching a hole and zeroing a range both make it read as zeros; plain allocation
         * changes no byte, only (without KEEP_SIZE) the size. */
        if (mode & (0x02 | 0x10)) on_fd('Z', fd, (uint64_t) offset, (uint64_t) len, NULL, 0);
        else if (!(mode & 0x01)) {
            struct stat st;
            if (fstat(fd, &st) == 0) on_fd('T', fd, (uint64_t) st.st_size, 0, NULL, 0);
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int fallocate64(int fd, int mode, off_t offset, off_t len) { return fallocate(fd, mode, offset, len); }

int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    pthread_mutex_lock(&lock);
    int r = real_ftruncate(fd, length);
    if (r == 0) on_fd('T', fd, (uint64_t) length, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int ftruncate64(int fd, off_t length) { return ftruncate(fd, length); }

int fsync(int fd) {
    REAL(fsync);
    pthread_mutex_lock(&lock);
    int r = real_fsync(fd);
    if (r == 0) on_fd('S', fd, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int fdatasync(int fd) {
    REAL(fdatasync);
    pthread_mutex_lock(&lock);
    int r = real_fdatasync(fd);
    if (r == 0) on_fd('S', fd, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

void sync(void) {
    REAL(sync);
    pthread_mutex_lock(&lock);
    real_sync();
    if (ready()) emit('G', "", 0, 0, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
}

int syncfs(int fd) {
    REAL(syncfs);
    pthread_mutex_lock(&lock);
    int r = real_syncfs(fd);
    char path[PATH_MAX];
    if (r == 0 && fd_path(fd, path)) emit('G', "", 0, 0, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

/* The absolute form of a path a program names (relative to the working directory). */
static void absolute(int dirfd, const char *path, char *out) {
    if (path[0] == '/') { snprintf(out, PATH_MAX, "%s", path); return; }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) { if (!getcwd(base, sizeof base)) base[0] = 0; }
    else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        base[n < 0 ? 0 : n] = 0;
    }
    snprintf(out, PATH_MAX, "%s/%s", base, path);
}

int renameat2(int olddirfd, const char *old, int newdirfd, const char *new, unsigned flags) {
    REAL(renameat2);
    char a[PATH_MAX], b[PATH_MAX];
    absolute(olddirfd, old, a);
    absolute(newdirfd, new, b);
    pthread_mutex_lock(&lock);
    int r = real_renameat2(olddirfd, old, newdirfd, new, flags);
    if (r == 0 && (watched(a) || watched(b))) {
        char both[2 * PATH_MAX];
        size_t la = strlen(a), lb = strlen(b);
        memcpy(both, a, la + 1);
        memcpy(both + la + 1, b, lb);
        emit('R', both, la + 1 + lb, 0, 0, 0, NULL, 0);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int renameat(int olddirfd, const char *old, int newdirfd, const char *new) {
    return renameat2(olddirfd, old, newdirfd, new, 0);
}

int rename(const char *old, const char *new) { return renameat2(AT_FDCWD, old, AT_FDCWD, new, 0); }

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    char a[PATH_MAX];
    absolute(dirfd, path, a);
    pthread_mutex_lock(&lock);
    int r = real_unlinkat(dirfd, path, flags);
    if (r == 0 && watched(a)) emit('U', a, strlen(a), 0, 0, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int unlink(const char *path) { return unlinkat(AT_FDCWD, path, 0); }
