// SPDX-License-Identifier: Apache-2.0
// Thin wrappers for Linux calls that Swift cannot import directly
// (fallocate needs _GNU_SOURCE; ioctl is variadic).
#pragma once
#include <stdint.h>

/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE.
int cbd_punch_hole(int fd, int64_t offset, int64_t length);
/// fallocate(2) with FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE.
int cbd_zero_range(int fd, int64_t offset, int64_t length);
/// ioctl(BLKZEROOUT) on a block device.
int cbd_blk_zeroout(int fd, uint64_t offset, uint64_t length);
/// lseek(2) with SEEK_DATA: the next offset >= `offset` holding data; -1 with ENXIO past the last.
int64_t cbd_seek_data(int fd, int64_t offset);
/// lseek(2) with SEEK_HOLE: the next offset >= `offset` in a hole (or the end of file).
int64_t cbd_seek_hole(int fd, int64_t offset);
/// ioctl(BLKROGET): 1 when the block device is read-only, 0 when writable, -1 on error.
int cbd_blk_readonly(int fd);
/// The cbd-tools version (the VERSION file, passed in by Package.swift).
const char *cbd_version(void);
/// copy_file_range(2) between two offsets: bytes copied (possibly fewer), or -1 with errno.
int64_t cbd_copy_range(int fd_in, int64_t offset_in, int fd_out, int64_t offset_out, int64_t length);
// Flushes standard output (stdio): 0, or the errno of a write that failed since it opened.
int cbd_flush_stdout(void);
