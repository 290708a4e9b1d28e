// SPDX-License-Identifier: Apache-2.0
// Preloaded into nbdkit by serve_test.py: while the file named by CBD_TEST_SLOW_SYNC exists,
// each fsync(2) waits 1.5 s first. A background commit syncs its data with no lock held, so
// this holds its store open for long enough that a client's write surely comes meanwhile.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    const char *flag = getenv("CBD_TEST_SLOW_SYNC");
    if (flag && access(flag, F_OK) == 0) usleep(1500 * 1000);
    return real(fd);
}
