// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/falloc.h>
#include "cbd_sys.h"

int cbd_punch_hole(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

int cbd_zero_range(int fd, int64_t offset, int64_t length) {
    return fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
}

int cbd_blk_zeroout(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = { offset, length };
    return ioctl(fd, BLKZEROOUT, range);
}

#include <unistd.h>
int64_t cbd_seek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }
int64_t cbd_seek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }

int cbd_blk_readonly(int fd) {
    int ro = 0;
    if (ioctl(fd, BLKROGET, &ro) != 0) return -1;
    return ro ? 1 : 0;
}

const char *cbd_version(void) {
    return CBD_VERSION;
}

int64_t cbd_copy_range(int fd_in, int64_t offset_in, int fd_out, int64_t offset_out, int64_t length) {
    off64_t in = offset_in, out = offset_out;
    return copy_file_range(fd_in, &in, fd_out, &out, (size_t) length, 0);
}

int cbd_flush_stdout(void) {
  errno = 0;
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  return errno ? errno : EIO;
}
