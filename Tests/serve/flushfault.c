// SPDX-License-Identifier: Apache-2.0
// nbdkit filter "flushfault": flushes (and FUA writes) fail with EIO while a trigger file
// exists, as a disk whose cache flush fails does. nbdkit 1.32's error filter fails reads,
// writes, trims, zeroes and extents but never a flush; this is the fault it lacks.
//
//   nbdkit --filter=./flushfault.so file disk.img flushfault-file=/tmp/trigger
//
// Built by Tests/serve/fault_test.py: cc -shared -fPIC -o flushfault.so flushfault.c
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nbdkit-filter.h>

static char *trigger;

static void flushfault_unload(void) { free(trigger); }

static int flushfault_config(nbdkit_next_config *next, nbdkit_backend *nxdata, const char *key, const char *value) {
  if (strcmp(key, "flushfault-file") == 0) {
    free(trigger);
    trigger = nbdkit_absolute_path(value);
    return trigger ? 0 : -1;
  }
  return next(nxdata, key, value);
}

static int failing(void) { return trigger && access(trigger, F_OK) == 0; }

static int flushfault_flush(nbdkit_next *next, void *handle, uint32_t flags, int *err) {
  (void) handle;
  if (failing()) {
    nbdkit_error("flushfault: flush fails (trigger file exists)");
    *err = EIO;
    return -1;
  }
  return next->flush(next, flags, err);
}

static int flushfault_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count, uint64_t offset,
                             uint32_t flags, int *err) {
  (void) handle;
  if ((flags & NBDKIT_FLAG_FUA) && failing()) {
    nbdkit_error("flushfault: FUA write fails (trigger file exists)");
    *err = EIO;
    return -1;
  }
  return next->pwrite(next, buf, count, offset, flags, err);
}

static struct nbdkit_filter filter = {
  .name = "flushfault",
  .longname = "cbd-tools test filter: failing flushes",
  .unload = flushfault_unload,
  .config = flushfault_config,
  .config_help = "flushfault-file=<PATH>  Flushes fail with EIO while PATH exists.",
  .flush = flushfault_flush,
  .pwrite = flushfault_pwrite,
};

NBDKIT_REGISTER_FILTER(filter)
