// SPDX-License-Identifier: Apache-2.0
// The bridge between nbdkit's C plugin interface (plugin.c) and the Swift plugin
// (Sources/NBDKitCBD), which implements these functions with @_cdecl.
#pragma once
#include <stdint.h>

// Implemented in Swift. Each returns 0 (or a value) on success, -1 after cbd_plugin_error.
int cbd_plugin_config(const char *key, const char *value);
int cbd_plugin_config_complete(void);
int cbd_plugin_get_ready(void);
/// After nbdkit forked into the background (or chose not to): the serving process is known.
int cbd_plugin_after_fork(void);
void cbd_plugin_cleanup(void);
/// 1 when the stop (cleanup) could not store every acknowledged write, or close the device.
int cbd_plugin_lost_at_stop(void);
int cbd_plugin_readonly(void);
int64_t cbd_plugin_get_size(void);
int64_t cbd_plugin_block_size(void);
int cbd_plugin_pread(void *buf, uint32_t count, uint64_t offset);
/// The work a write can do before the writer's lock: cbd_plugin_pack_ahead packs the blocks it
/// covers whole (called with no lock), cbd_plugin_prefetch reads ahead those it changes in part
/// (under the shared lock, adding to what pack_ahead returned). The result (NULL: nothing) is
/// given to cbd_plugin_pwrite, which releases it.
void *cbd_plugin_pack_ahead(const void *buf, uint32_t count, uint64_t offset);
void *cbd_plugin_prefetch(uint32_t count, uint64_t offset, void *ahead);
/// 0, -1 after cbd_plugin_error, or 1: refused for want of room while a plan's data is being
/// stored (nothing changed, nothing logged); call it again once that plan is finished.
int cbd_plugin_pwrite(const void *buf, uint32_t count, uint64_t offset, int fua, void *ahead);
/// The volume's change count (under the writer's lock): a flush's mark when it comes.
int64_t cbd_plugin_changes(void);
/// Commits the blocks dirty when the change count was `mark` (under the writer's lock).
int cbd_plugin_flush(int64_t mark);
/// The staged commit (plugin.c's commit_one_plan): whether one is due (under the writer's lock;
/// 0: no, also when background=false; 1: yes; 2: writers should commit a plan first), a plan of
/// the dirty blocks (under the writer's lock; NULL: nothing to do) and its size, the plan packed
/// (no lock), stored (cbd_plugin_store_commit, below), then published and released (under the
/// writer's lock; -1 after cbd_plugin_error when the commit failed, at either step).
int cbd_plugin_wants_commit(void);
void *cbd_plugin_plan_commit(int64_t mark);  // blocks dirty when the change count was mark
void cbd_plugin_pack_commit(void *plan, int all_cores);
/// A writer held back by the plan being packed compresses some of its blocks (no lock); the
/// plan is held meanwhile (retain before, release after: the packer may finish first).
void cbd_plugin_help_pack(void *plan);
void cbd_plugin_plan_retain(void *plan);
void cbd_plugin_plan_release(void *plan);
int64_t cbd_plugin_plan_blocks(void *plan);
/// Dirty blocks in the cache (under the writer's lock): what a flush has to commit.
int64_t cbd_plugin_dirty_blocks(void);
/// Called with no lock held: it takes the shared lock (cbd_plugin_lock_shared) for the parts
/// that need it, and writes and syncs the plan's data beside every request.
void cbd_plugin_store_commit(void *plan);
/// plugin.c's lock, shared (for Swift code that holds it for part of a call).
void cbd_plugin_lock_shared(void);
void cbd_plugin_unlock_shared(void);
int cbd_plugin_finish_commit(void *plan);
/// As cbd_plugin_pwrite: 1 asks to be called again once the plan being stored is finished.
int cbd_plugin_zero(uint32_t count, uint64_t offset, int fua);
int cbd_plugin_trim(uint32_t count, uint64_t offset, int fua);
int cbd_plugin_close(void);
/// Calls `add(context, offset, length, hole)` for each run of allocated or unallocated blocks
/// of the range, as far as `one` (only the first run) asks.
int cbd_plugin_extents(uint32_t count, uint64_t offset, int one, void *context,
                       int (*add)(void *context, uint64_t offset, uint64_t length, int hole));

// Implemented in C, for Swift: report an error in nbdkit's log and set errno.
void cbd_plugin_error(const char *message, int error);
// A line in nbdkit's log that is not an error of the request at hand.
void cbd_plugin_log(const char *message);
// A warning, as one: to stderr in the foreground, to syslog at LOG_WARNING in the background.
void cbd_plugin_warn(const char *message);
// nbdkit's own parsers: nbdkit_parse_size, nbdkit_parse_unsigned and nbdkit_parse_bool (-1 on
// a bad value, after logging it).
int64_t cbd_plugin_parse_size(const char *value);
int cbd_plugin_parse_unsigned(const char *what, const char *value, unsigned *out);
int cbd_plugin_parse_bool(const char *value);
