// SPDX-License-Identifier: Apache-2.0
// Preloaded into nbdkit by serve_test.py: dlclose(3) returns, then the process waits 3 s
// before it goes on to exit. Threads that outlive an unloaded plugin (Dispatch's workers) wake
// in that time; if dlclose unmapped the code they run, the stop dies of SIGSEGV. Without
// this pause the window is a few instructions, and the crash came once in about 150 stops.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>

int dlclose(void *handle) {
    static int (*real)(void *);
    if (!real) real = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
    int r = real(handle);
    sleep(3);
    return r;
}
