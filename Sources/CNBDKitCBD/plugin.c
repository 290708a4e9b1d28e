// SPDX-License-Identifier: Apache-2.0
// nbdkit plugin "cbd": serves the logical device of a CBD image or block device.
// This file only adapts nbdkit's C interface; the work is done in Swift (NBDKitCBD).
#define NBDKIT_API_VERSION 2
#include <unistd.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <malloc.h>
#include <sys/stat.h>
#include <time.h>
#include <nbdkit-plugin.h>
#include "cbd_plugin.h"

// Requests run in parallel, on every connection. One shared Volume (one cache, one commit
// order) serves all connections, so a flush on any connection commits every connection's
// writes. `volume_lock` makes that Volume safe: reads share it (Volume.readShared may run on
// many threads at once, decompressing on all cores); everything that changes the cache or the
// device (write, zero, trim, flush, close, and extents, which fills the metadata cache) holds
// it alone.
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static pthread_rwlock_t volume_lock = PTHREAD_RWLOCK_INITIALIZER;

// Evaluates `expr` holding the lock alone or shared; keeps the errno it set.
#define WITH_LOCK(exclusive, expr) \
  ({ (exclusive) ? pthread_rwlock_wrlock(&volume_lock) : pthread_rwlock_rdlock(&volume_lock); \
     int r_ = (expr); int e_ = errno; pthread_rwlock_unlock(&volume_lock); errno = e_; r_; })
#define EXCLUSIVE(expr) WITH_LOCK(1, expr)
#define SHARED(expr) WITH_LOCK(0, expr)

void cbd_plugin_lock_shared(void) { pthread_rwlock_rdlock(&volume_lock); }
void cbd_plugin_unlock_shared(void) { pthread_rwlock_unlock(&volume_lock); }

void cbd_plugin_error(const char *message, int error) {
  nbdkit_error("%s", message);
  errno = error;
}

void cbd_plugin_log(const char *message) { nbdkit_error("%s", message); }

// nbdkit has no warning level (nbdkit_error would print "error: ... warning"). Its log is
// stderr in the foreground; in the background its stderr is /dev/null and its log syslog.
// So a warning goes where the log goes, marked as a warning.
static int warn_to_syslog;

static int stderr_is_dev_null(void) {
  struct stat err, null;
  return fstat(2, &err) == 0 && stat("/dev/null", &null) == 0 && S_ISCHR(err.st_mode) && err.st_rdev == null.st_rdev;
}

void cbd_plugin_warn(const char *message) {
  if (warn_to_syslog) syslog(LOG_WARNING, "cbd: warning: %s", message);
  else fprintf(stderr, "nbdkit: cbd: warning: %s\n", message);
}
int64_t cbd_plugin_parse_size(const char *value) { return nbdkit_parse_size(value); }
int cbd_plugin_parse_unsigned(const char *what, const char *value, unsigned *out) {
  return nbdkit_parse_unsigned(what, value, out);
}
int cbd_plugin_parse_bool(const char *value) { return nbdkit_parse_bool(value); }

// The committer: one thread that commits dirty blocks once a quarter of the cache is dirty,
// so that a client write seldom finds the cache full of dirty blocks and carries a whole
// commit itself. It compresses with no lock held (a plan holds the blocks' bytes as they were,
// and a block written since is left for a later commit), takes fresh pblks and writes the
// bitmaps beside reads (the shared lock: no request changes the volume meanwhile), writes and
// syncs the data with no lock (fresh pblks are nobody else's: writes go on too), and holds the
// writer's lock only to publish the entries and release the old pblks. A request that changes
// the volume before that publishes them first. A flush commits in the same plans (cbd_flush), a FUA
// request commits its own blocks, and close commits everything.
static pthread_t committer;
static int committer_running;
static pthread_mutex_t commit_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t commit_cond = PTHREAD_COND_INITIALIZER;
static int commit_wanted, committer_stopping;

// One plan at a time (the Volume has one plan buffer): the committer's, a flush's, a writer's.
// A flush's last step, a close and a write tried again after a refusal for room hold it too,
// so that no plan is in flight then. Taken before volume_lock, never while holding it.
static pthread_mutex_t plan_mutex = PTHREAD_MUTEX_INITIALIZER;
// cbd_plugin_wants_commit as the last write or plan left it (read before taking any lock).
static atomic_int dirty_level;

// Signalled (under commit_mutex) whenever a plan begins to be packed and when it ends: writers
// held back past seven eighths of the cache dirty wait on it (CLOCK_MONOTONIC: set up in
// cbd_load), and help pack it meanwhile.
static pthread_cond_t progress_cond;
// The plan being packed (under commit_mutex; NULL at other times): what held-back writers help.
static void *packing_plan;

// glibc gives each thread that allocates its own arena (up to 8 per core), and each keeps the
// blocks it freed: with nbdkit's threads each reading blocks ahead, the server's peak RSS was
// 164 MiB for a 32 MiB cache. Two arenas still kept 35 MiB of freed blocks beside 44 MiB in
// use (heaptrack, 64K random writes of random data: 97-99 MiB). One arena: 77-80 MiB over
// bench/live's workloads, and farm-bench saw no loss (4K and 64K random writes, 4K random
// reads, 1M writes: wall A/B 0.96-1.00).
static void cbd_load(void) {
  mallopt(M_ARENA_MAX, 1);
  pthread_condattr_t attr;   // waits with a deadline are not moved by a change of the clock
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&progress_cond, &attr);
  pthread_condattr_destroy(&attr);
}

// Shows the plan being packed to writers held back (and wakes them to help), or clears it.
static void set_packing_plan(void *plan) {
  pthread_mutex_lock(&commit_mutex);
  packing_plan = plan;
  if (plan) pthread_cond_broadcast(&progress_cond);
  pthread_mutex_unlock(&commit_mutex);
}

// The dirty level a plan or a change left, told to writers held back by it.
static void set_dirty_level(int level) {
  atomic_store(&dirty_level, level);
  pthread_mutex_lock(&commit_mutex);
  pthread_cond_broadcast(&progress_cond);
  pthread_mutex_unlock(&commit_mutex);
}

// One staged commit of the oldest dirty blocks, plan_mutex held: of those dirty when the change
// count was `mark` (a flush's; INT64_MAX: any). Planned alone, compressed with no lock (on one
// core, or on all of them for a flush and for a plan begun while writers wait), its data
// written beside every request, published alone. How many blocks it took (0: nothing to
// commit), or -1 when it failed (logged; the server is read-only from then on).
static int64_t commit_one_plan(int all_cores, int64_t mark) {
  void *plan = NULL;
  int r = 0, level = 0;
  int64_t blocks = 0;
  (void) EXCLUSIVE((plan = cbd_plugin_plan_commit(mark), level = cbd_plugin_wants_commit(), 0));
  if (plan) {
    blocks = cbd_plugin_plan_blocks(plan);
    set_packing_plan(plan);
    cbd_plugin_pack_commit(plan, all_cores);   // returns once helpers are done with it too
    set_packing_plan(NULL);
    cbd_plugin_store_commit(plan);   // takes the shared lock for the parts that need it
    (void) EXCLUSIVE((r = cbd_plugin_finish_commit(plan), level = cbd_plugin_wants_commit(), r));
  }
  set_dirty_level(level);
  return r == 0 ? blocks : -1;
}

static void deadline_in_100ms(struct timespec *until) {
  clock_gettime(CLOCK_MONOTONIC, until);
  until->tv_nsec += 100 * 1000000L;
  if (until->tv_nsec >= 1000000000L) { until->tv_sec += 1; until->tv_nsec -= 1000000000L; }
}

// Past seven eighths of the cache dirty, a writer waits for the committer's next plan before
// it adds more (dirty_ratio; since Linux 3.2 the kernel's writers pause rather than write back
// themselves). Else the write that finds every slot dirty commits the whole cache under the
// writer's lock. While it waits it compresses blocks of the plan being packed (each plan
// once): its core would idle otherwise, since the committer packs on one core. (A plan begun
// while writers wait is also packed on all cores.) A writer used to commit a plan itself here,
// but every other writer then queued behind that plan and the committer's: with four
// connections, 3 % of 4K random writes took over 3 ms in the plugin, two thirds of it here. A
// writer still commits a plan itself when the committer made no progress for 100 ms (none
// running, or starved). Before its read-ahead: a plan published meanwhile would make the write
// read its blocks again.
static void wait_for_commit(void) {
  if (atomic_load(&dirty_level) < 2) return;
  if (committer_running) {
    struct timespec until;
    void *helped = NULL;
    deadline_in_100ms(&until);
    pthread_mutex_lock(&commit_mutex);
    commit_wanted = 1;
    pthread_cond_signal(&commit_cond);
    while (atomic_load(&dirty_level) >= 2 && !committer_stopping) {
      void *plan = packing_plan;
      if (plan && plan != helped) {
        helped = plan;
        cbd_plugin_plan_retain(plan);   // the packer may finish and release it first
        pthread_mutex_unlock(&commit_mutex);
        cbd_plugin_help_pack(plan);
        cbd_plugin_plan_release(plan);
        deadline_in_100ms(&until);        // helping is progress
        pthread_mutex_lock(&commit_mutex);
        continue;
      }
      if (pthread_cond_timedwait(&progress_cond, &commit_mutex, &until) != 0) break;
    }
    pthread_mutex_unlock(&commit_mutex);
    if (atomic_load(&dirty_level) < 2) return;
  }
  pthread_mutex_lock(&plan_mutex);
  if (atomic_load(&dirty_level) >= 2) (void) commit_one_plan(1, INT64_MAX);
  pthread_mutex_unlock(&plan_mutex);
}

// Commits plans while a quarter of the cache is dirty: woken by the changes that make it so,
// it goes on by itself after each plan (writers held back make no change to wake it).
static void *committer_main(void *arg) {
  (void) arg;
  pthread_mutex_lock(&commit_mutex);
  for (;;) {
    while (!commit_wanted && !committer_stopping) pthread_cond_wait(&commit_cond, &commit_mutex);
    if (committer_stopping) break;
    commit_wanted = 0;
    pthread_mutex_unlock(&commit_mutex);
    pthread_mutex_lock(&plan_mutex);
    int64_t done = commit_one_plan(atomic_load(&dirty_level) >= 2, INT64_MAX);
    pthread_mutex_unlock(&plan_mutex);
    pthread_mutex_lock(&commit_mutex);
    if (done > 0 && atomic_load(&dirty_level) >= 1) commit_wanted = 1;
  }
  pthread_mutex_unlock(&commit_mutex);
  return NULL;
}

// Called with the result of cbd_plugin_wants_commit, read under the writer's lock.
static void wake_committer(int wanted) {
  atomic_store(&dirty_level, wanted);
  if (!wanted || !committer_running) return;
  pthread_mutex_lock(&commit_mutex);
  commit_wanted = 1;
  pthread_cond_signal(&commit_cond);
  pthread_mutex_unlock(&commit_mutex);
}

// A change that may need room (write, zero) under the writer's lock, then the committer woken
// as the volume asks. `first` returns 1 when it was refused for room while a plan stores its
// data (nothing changed): `again` then runs once that plan is finished, holding plan_mutex so
// that no other starts, and only a request that does not fit then gets ENOSPC.
#define CHANGE(first, again) \
  ({ int change_r, change_wanted = 0; \
     (void) EXCLUSIVE((change_r = (first), change_wanted = cbd_plugin_wants_commit(), change_r)); \
     if (change_r == 1) { \
       pthread_mutex_lock(&plan_mutex); \
       (void) EXCLUSIVE((change_r = (again), change_wanted = cbd_plugin_wants_commit(), change_r)); \
       pthread_mutex_unlock(&plan_mutex); \
     } \
     wake_committer(change_wanted); change_r; })

static void start_committer(void) {
  if (cbd_plugin_readonly() || committer_running) return;
  int err = pthread_create(&committer, NULL, committer_main, NULL);
  if (err == 0) committer_running = 1;
  else nbdkit_error("cbd: no background commit thread (%s): writes commit as the cache fills", strerror(err));
}

static void stop_committer(void) {
  if (!committer_running) return;
  pthread_mutex_lock(&commit_mutex);
  committer_stopping = 1;
  pthread_cond_signal(&commit_cond);
  pthread_cond_broadcast(&progress_cond);
  pthread_mutex_unlock(&commit_mutex);
  pthread_join(committer, NULL);
  committer_running = 0;
}

static int cbd_config(const char *key, const char *value) { return cbd_plugin_config(key, value); }
static int cbd_config_complete(void) { return cbd_plugin_config_complete(); }
static int cbd_get_ready(void) { return cbd_plugin_get_ready(); }
static int cbd_after_fork(void) {
  warn_to_syslog = stderr_is_dev_null();
  int r = cbd_plugin_after_fork();
  if (r == 0) start_committer();  // threads do not survive nbdkit's fork: started here
  return r;
}
static void cbd_cleanup(void) {
  stop_committer();
  cbd_plugin_cleanup();
}

// The last callback: a stop that could not store every write it acknowledged must not look
// like a clean one, so nbdkit's exit status becomes 1 (the log has said how many blocks).
// _exit, not exit: nbdkit has finished with the plugin, and nothing of ours is left unsynced.
static void cbd_unload(void) {
  if (cbd_plugin_lost_at_stop()) _exit(1);
}

static void *cbd_open(int readonly) {
  static int handle;   // one shared device: the handle only marks a connection
  (void) readonly;
  return &handle;
}

// Between plans (plan_mutex): a plan storing its data holds blocks a close cannot commit, and
// the device must stay DIRTY until they are published.
static void cbd_close(void *handle) {
  (void) handle;
  pthread_mutex_lock(&plan_mutex);
  (void) EXCLUSIVE(cbd_plugin_close());
  pthread_mutex_unlock(&plan_mutex);
}
static int64_t cbd_get_size(void *handle) { (void) handle; return cbd_plugin_get_size(); }
static int cbd_can_write(void *handle) { (void) handle; return !cbd_plugin_readonly(); }
static int cbd_can_flush(void *handle) { (void) handle; return 1; }
static int cbd_can_trim(void *handle) { (void) handle; return !cbd_plugin_readonly(); }
static int cbd_can_zero(void *handle) { (void) handle; return !cbd_plugin_readonly(); }
static int cbd_can_fast_zero(void *handle) { (void) handle; return !cbd_plugin_readonly(); }
static int cbd_can_fua(void *handle) { (void) handle; return NBDKIT_FUA_NATIVE; }
static int cbd_can_multi_conn(void *handle) { (void) handle; return 1; }
static int cbd_can_extents(void *handle) { (void) handle; return 1; }

// Any request works, to the byte (a partial block is read, modified and written again), so
// the minimum is 1: a larger one would make clients such as libnbd refuse unaligned requests
// that the device serves. A whole logical block is what costs least; nbdkit's own request
// limit is 32 MiB.
static int cbd_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum) {
  (void) handle;
  int64_t lblk = cbd_plugin_block_size();
  if (lblk < 0) return -1;
  *minimum = 1;
  *maximum = 32 * 1024 * 1024;
  *preferred = lblk > *maximum ? *maximum : (uint32_t) lblk;
  return 0;
}

static int cbd_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
  (void) handle; (void) flags;
  return SHARED(cbd_plugin_pread(buf, count, offset));
}

// A write does what it can before the exclusive section, on its own thread: the blocks it
// covers whole are compressed with no lock held (they depend on the request only), and the
// blocks it changes in part are read and decompressed under the shared lock, beside reads and
// other writes' read-ahead. The exclusive section then only puts blocks in the cache (the
// read-ahead is dropped there if a commit ran in between), and a commit stores the packed
// blocks as they are.
static int cbd_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags) {
  (void) handle;
  wait_for_commit();
  void *ahead = cbd_plugin_pack_ahead(buf, count, offset);
  // Only a write that ends inside a block has anything to read ahead: one of whole blocks
  // does not take the shared lock (waiting there behind a writer costs two context switches).
  int64_t lblk = cbd_plugin_block_size();
  if (lblk <= 0 || offset % (uint64_t) lblk != 0 || count % (uint64_t) lblk != 0)
    (void) SHARED((ahead = cbd_plugin_prefetch(count, offset, ahead), 0));
  int fua = (flags & NBDKIT_FLAG_FUA) != 0;
  return CHANGE(cbd_plugin_pwrite(buf, count, offset, fua, ahead),
                cbd_plugin_pwrite(buf, count, offset, fua, NULL));   // the ahead is spent
}

// A flush commits the blocks dirty when it came in staged plans first, as the committer does
// (plans of those blocks only: the writes that raced it would fill them, leaving what it owes
// to its last step), so that reads (and between plans, writes) go on beside their compression
// and data writes;
// the exclusive flush after them then commits what is left of the blocks dirty when it came
// (as they are now), and its reply means every write acknowledged before the flush is on the
// device. Blocks that became dirty after it came wait: committing them too made the flush,
// and the reads queued behind it, wait for the writes that raced it.
static int cbd_flush(void *handle, uint32_t flags) {
  (void) handle; (void) flags;
  // What the flush must store: the blocks dirty now. Writes that come after may wait.
  int64_t left = 0, mark = 0;
  (void) EXCLUSIVE((left = cbd_plugin_dirty_blocks(), mark = cbd_plugin_changes(), 0));
  // plan_mutex held to the end: a plan storing its data with no lock leaves its blocks to its
  // own finish, so the last step must not run while another plan is in flight.
  pthread_mutex_lock(&plan_mutex);
  while (left > 0 && !cbd_plugin_readonly()) {
    int64_t done = commit_one_plan(1, mark);
    if (done <= 0) break;
    left -= done;
  }
  int r = EXCLUSIVE(cbd_plugin_flush(mark));
  pthread_mutex_unlock(&plan_mutex);
  return r;
}

// Trim makes the whole blocks of the range unallocated and leaves the parts of blocks at its
// ends alone (a trim is advisory): it never needs space, even on a full device. Zero makes
// whole blocks unallocated too (they read as zeros and take no space) and writes zeros into
// partial blocks. That is as fast as anything can zero, so a fast-zero request is honoured.
static int cbd_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags) {
  (void) handle;
  return EXCLUSIVE(cbd_plugin_trim(count, offset, (flags & NBDKIT_FLAG_FUA) != 0));
}

static int cbd_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags) {
  (void) handle;
  wait_for_commit();
  int fua = (flags & NBDKIT_FLAG_FUA) != 0;
  return CHANGE(cbd_plugin_zero(count, offset, fua), cbd_plugin_zero(count, offset, fua));
}

static int add_extent(void *context, uint64_t offset, uint64_t length, int hole) {
  return nbdkit_add_extent(context, offset, length, hole ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0);
}

static int cbd_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                       struct nbdkit_extents *extents) {
  (void) handle;
  return EXCLUSIVE(cbd_plugin_extents(count, offset, (flags & NBDKIT_FLAG_REQ_ONE) != 0, extents, add_extent));
}

static void cbd_dump_plugin(void) {
  // `nbdkit cbd --dump-plugin`: what scripts (and cbd serve) can read.
  nbdkit_debug("cbd plugin");
}

static struct nbdkit_plugin plugin = {
  .name = "cbd",
  .version = CBD_VERSION,
  .longname = "compressed block device (CBD) plugin",
  .description = "Serves the logical device of a CBD image or block device (cbd-tools).",
  .load = cbd_load,
  .config = cbd_config,
  .config_complete = cbd_config_complete,
  .config_help =
    "file=<DEVICE>     (required) The CBD image file or block device.\n"
    "cache=<SIZE>      Logical block cache (default 32M).\n"
    "lowwater=<PERCENT> Log a warning when free space falls below it (default 10).\n"
    "readonly=<BOOL>   Serve read-only (with nbdkit -r); a DIRTY device is served only so.\n"
    "level=<1..12>     Compression of written blocks: 1 fast (default), 2-12 LZ4HC.\n"
    "background=<BOOL> Commit in a thread once a quarter of the cache is dirty (default true).\n"
    "uri=<URI>         Where clients connect, for cbd info (cbd serve passes it).\n"
    "socket=<PATH>     The Unix socket nbdkit listens on: removed at a clean stop.\n"
    "pidfile=<PATH>    nbdkit's -P file: removed at a clean stop if it names this process.",
  .magic_config_key = "file",
  .get_ready = cbd_get_ready,
  .after_fork = cbd_after_fork,
  .cleanup = cbd_cleanup,
  .unload = cbd_unload,
  .open = cbd_open,
  .close = cbd_close,
  .get_size = cbd_get_size,
  .can_write = cbd_can_write,
  .can_flush = cbd_can_flush,
  .can_trim = cbd_can_trim,
  .can_zero = cbd_can_zero,
  .can_fast_zero = cbd_can_fast_zero,
  .can_fua = cbd_can_fua,
  .can_multi_conn = cbd_can_multi_conn,
  .can_extents = cbd_can_extents,
  .block_size = cbd_block_size,
  .pread = cbd_pread,
  .pwrite = cbd_pwrite,
  .flush = cbd_flush,
  .trim = cbd_trim,
  .zero = cbd_zero,
  .extents = cbd_extents,
  .dump_plugin = cbd_dump_plugin,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
