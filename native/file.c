// The file backend's native half (Node has no flock/fcntl locks, no inotify event choice, and no
// mmap): locks on open files (locks.h), the lock file's mapped header (header.h) and inotify
// watches read on the event loop (watch.h). This file is the N-API glue.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "locks.h"
#include "header.h"

#define CHECK(call)                                                         \
  if ((call) != napi_ok) {                                                  \
    napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", "bad arguments: " #call); \
    return NULL;                                                            \
  }

// Byte ranges, as in src/backends/file/native.ts.
#define MAIN 0
#define WAITERS 3

struct mapping {
  struct header *h;
};

// Errors carry a code JavaScript can tell apart: ENOSPC and EDQUOT become a LockAcquisitionError
// about the disk; ERR_LOCKSMITH_FENCE is a counter at its top.
static napi_value throw_code(napi_env env, int err, const char *what) {
  char message[200];
  const char *code = err == ENOSPC ? "ENOSPC" : err == EDQUOT ? "EDQUOT" : err == EOVERFLOW ? "ERR_LOCKSMITH_FENCE" : "ERR_LOCKSMITH_NATIVE";
  const char *why = err == EOVERFLOW ? "the fence counter is at its maximum (2^64-1); remove the lock file to start again from the clock"
                    : err == EFAULT  ? "the file cannot back its header (truncated, or the disk is full)"
                                     : strerror(err);
  snprintf(message, sizeof message, "%s: %s", what, why);
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value throw_errno(napi_env env, const char *what) { return throw_code(env, errno, what); }

static napi_value bad_args(napi_env env, const char *usage) {
  napi_throw_type_error(env, "ERR_LOCKSMITH_NATIVE", usage);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == want;
}

static int read_range(napi_env env, napi_value *argv, int *fd, int32_t *type, int64_t *start, int64_t *len) {
  return napi_get_value_int32(env, argv[0], fd) == napi_ok && napi_get_value_int32(env, argv[1], type) == napi_ok &&
         napi_get_value_int64(env, argv[2], start) == napi_ok && napi_get_value_int64(env, argv[3], len) == napi_ok && *type >= 0 && *type <= 2;
}

static struct header *header_of(napi_env env, napi_value handle) {
  struct mapping *m;
  if (napi_get_value_external(env, handle, (void **)&m) != napi_ok || !m->h) return NULL;
  return m->h;
}

static napi_value boolean(napi_env env, int value) {
  napi_value result;
  CHECK(napi_get_boolean(env, value, &result));
  return result;
}

static napi_value null_value(napi_env env) {
  napi_value result;
  CHECK(napi_get_null(env, &result));
  return result;
}

static napi_value bigint(napi_env env, uint64_t value) {
  napi_value result;
  CHECK(napi_create_bigint_uint64(env, value, &result));
  return result;
}

// lock(fd, type 0 unlock | 1 shared | 2 exclusive, start, len): true when set, false when another
// open file holds a conflicting lock.
static napi_value Lock(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int fd;
  int32_t type;
  int64_t start, len;
  if (!get_args(env, info, 4, argv) || !read_range(env, argv, &fd, &type, &start, &len)) return bad_args(env, "lock(fd, type, start, len)");
  if (set_lock(fd, type, start, len) == 0) return boolean(env, 1);
  if (BUSY(errno)) return boolean(env, 0);
  return throw_errno(env, LOCK_CALL);
}

// probe(fd, type 1 shared | 2 exclusive, start, len): 0 when such a lock could be set now, else the
// type of a conflicting lock another open file holds (1 shared, 2 exclusive).
static napi_value Probe(napi_env env, napi_callback_info info) {
  napi_value argv[4], result;
  int fd;
  int32_t type;
  int64_t start, len;
  if (!get_args(env, info, 4, argv) || !read_range(env, argv, &fd, &type, &start, &len) || type == 0) return bad_args(env, "probe(fd, type, start, len)");
  int held = probe_lock(fd, type, start, len);
  if (held < 0) return throw_errno(env, LOCK_CALL);
  CHECK(napi_create_int32(env, held, &result));
  return result;
}

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct mapping *m = data;
  if (m->h) munmap(m->h, PAGE);
  free(m);
}

// map(fd): the header page of this open file, reserved first (ENOSPC / EDQUOT when the disk or
// quota is full), shared with every other process that maps it.
static napi_value Map(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return bad_args(env, "map(fd)");
  int err = reserve_page(fd);
  if (err) return throw_code(env, err, "reserving the lock file's header");
  void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) return throw_errno(env, "mmap");
  struct mapping *m = malloc(sizeof *m);
  if (!m) {
    munmap(page, PAGE);
    return throw_code(env, ENOMEM, "map");
  }
  m->h = page;
  if (napi_create_external(env, m, finalize_mapping, NULL, &result) != napi_ok) {
    finalize_mapping(env, m, NULL);
    return throw_code(env, ENOMEM, "napi_create_external");
  }
  return result;
}

// unmap(handle): at once rather than whenever the handle is collected.
static napi_value Unmap(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct mapping *m;
  if (!get_args(env, info, 1, argv) || napi_get_value_external(env, argv[0], (void **)&m) != napi_ok) return bad_args(env, "unmap(handle)");
  if (m->h) munmap(m->h, PAGE);
  m->h = NULL;
  return NULL;
}

static napi_value fence_or_throw(napi_env env, int err, uint64_t fence) {
  if (!err && !fence) err = EOVERFLOW;
  return err ? throw_code(env, err, "the lock file's header") : bigint(env, fence);
}

// grant(fd, handle, path, ino, owner, expiresAt): the whole exclusive acquisition. Returns the fence;
// false when another open file holds the lock; null when this file is no longer the one at `path`
// (swept, or removed by hand), so the caller must reopen. Holds MAIN only when it returns a fence.
static napi_value Grant(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int fd;
  int64_t ino;
  char path[4096], owner[OWNER_MAX + 1];
  size_t path_len;
  struct stat st;
  struct grant_args a = {owner, 0, 0, 0};
  if (!get_args(env, info, 6, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], path, sizeof path, &path_len) != napi_ok || napi_get_value_int64(env, argv[3], &ino) != napi_ok ||
      napi_get_value_string_utf8(env, argv[4], owner, sizeof owner, &a.owner_len) != napi_ok ||
      napi_get_value_double(env, argv[5], &a.expires_at) != napi_ok || a.owner_len >= OWNER_MAX || path_len >= sizeof path - 1) {
    return bad_args(env, "grant(fd, handle, path, ino, owner, expiresAt)");
  }
  struct header *h = header_of(env, argv[1]);
  if (!h) return bad_args(env, "grant(): not a mapped lock file");
  if (set_lock(fd, 2, MAIN, 1) != 0) return BUSY(errno) ? boolean(env, 0) : throw_errno(env, LOCK_CALL);
  // A sweeper unlinks the file while it holds MAIN, and someone may remove or replace it by hand: a
  // lock on a file no longer at the path guards nothing. (Its inode cannot be reused while we hold
  // it open, so comparing inode numbers is enough; lstat, as a symlink there is not our file.)
  if (lstat(path, &st) != 0 || (int64_t)st.st_ino != ino) {
    set_lock(fd, 0, MAIN, 1);
    return null_value(env);
  }
  int err = touch(fd, h, write_record, &a);
  if (err || !a.fence) set_lock(fd, 0, MAIN, 1);
  return fence_or_throw(env, err, a.fence);
}

// Arguments (fd, handle, ...) of the calls that touch a mapped header.
static int fd_and_header(napi_env env, napi_callback_info info, size_t want, napi_value *argv, int *fd, struct header **h) {
  return get_args(env, info, want, argv) && napi_get_value_int32(env, argv[0], fd) == napi_ok && (*h = header_of(env, argv[1])) != NULL;
}

// next(fd, handle): the next fence, for a shared holder that holds META.
static napi_value Next(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  struct header *h;
  struct grant_args a = {NULL, 0, 0, 0};
  if (!fd_and_header(env, info, 2, argv, &fd, &h)) return bad_args(env, "next(fd, handle)");
  int err = touch(fd, h, next_fence, &a); // before reading a.fence: argument order is unspecified
  return fence_or_throw(env, err, a.fence);
}

// renew(fd, handle, expiresAt): the exclusive holder's new expiry.
static napi_value Renew(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  struct header *h;
  struct grant_args a = {NULL, 0, 0, 0};
  if (!fd_and_header(env, info, 3, argv, &fd, &h) || napi_get_value_double(env, argv[2], &a.expires_at) != napi_ok) return bad_args(env, "renew(fd, handle, expiresAt)");
  int err = touch(fd, h, write_record, &a);
  return err ? throw_code(env, err, "renewing the lock file's header") : NULL;
}

// holder(handle): [owner, fence, expiresAt, pid] of the last exclusive holder, or null when there is
// none, its record kept changing under us, or the file no longer backs the page (truncated).
static napi_value Holder(napi_env env, napi_callback_info info) {
  napi_value argv[1], result, values[4];
  struct header *h;
  struct holder_args a;
  if (!get_args(env, info, 1, argv) || !(h = header_of(env, argv[0]))) return bad_args(env, "holder(handle)");
  if (guarded(h, read_record, &a) != 0 || a.found != 1) return null_value(env);
  CHECK(napi_create_string_utf8(env, a.owner, a.owner_len, &values[0]));
  CHECK(napi_create_bigint_uint64(env, a.fence, &values[1]));
  CHECK(napi_create_double(env, a.expires_at, &values[2]));
  CHECK(napi_create_int32(env, a.pid, &values[3]));
  CHECK(napi_create_array_with_length(env, 4, &result));
  for (uint32_t i = 0; i < 4; i++) CHECK(napi_set_element(env, result, i, values[i]));
  return result;
}

// release(fd): drops every lock this open file holds, then touches the file's timestamps (the change
// event waiters' watchers wake on) when someone waits: with ofd, only if some process registered as
// waiting (a read lock on WAITERS); with flock, which has no ranges to register on, always.
// Unlocking first, so that a waiter woken finds the lock free. Returns whether it touched.
static napi_value Release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return bad_args(env, "release(fd)");
  if (set_lock(fd, 0, 0, 0) != 0) return throw_errno(env, LOCK_CALL);
#ifdef LOCKSMITH_FLOCK
  int waiters = 1;
#else
  int waiters = probe_lock(fd, 2, WAITERS, 1);
  if (waiters < 0) return throw_errno(env, LOCK_CALL);
#endif
  if (waiters && futimens(fd, NULL) != 0) return throw_errno(env, "futimens");
  return boolean(env, waiters != 0);
}

#include "watch.h"

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value kind, watches;
  CHECK(napi_create_string_utf8(env, LOCK_KIND, NAPI_AUTO_LENGTH, &kind));
  CHECK(napi_get_boolean(env, WATCHES, &watches));
  napi_property_descriptor props[] = {
      METHOD("lock", Lock),       METHOD("probe", Probe),     METHOD("map", Map),
      METHOD("unmap", Unmap),     METHOD("grant", Grant),     METHOD("next", Next),
      METHOD("renew", Renew),     METHOD("holder", Holder),   METHOD("release", Release),
      METHOD("watch", Watch),     METHOD("unwatch", Unwatch),
      {"kind", NULL, NULL, NULL, NULL, kind, napi_enumerable, NULL},
      {"watches", NULL, NULL, NULL, NULL, watches, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
