// Open file description (OFD) locks for Node, which has no flock/fcntl. OFD locks belong to an open
// file (not to the process, unlike classic POSIX locks), so two opens in one process conflict as two
// processes would, and the kernel drops them the moment the file is closed or its process dies.
// Only non-blocking calls: waiting happens in JavaScript, so the event loop never blocks.
//
// Waiters watch the lock file with inotify on the event loop (watch()), for exactly the events that
// can free a lock: a release's touch (IN_ATTRIB) and the close of a descriptor opened for writing
// (IN_CLOSE_WRITE), which is also how a holder that crashed looks, since the kernel closes its files.
// Node's fs.watch cannot choose events: it would wake on every write and miss a crash.
//
// The lock file's first page is a header shared through mmap: the fence counter and the exclusive
// holder's record. An exclusive grant is one call here (lock, check the file is still at its path,
// count the fence, write the record) and touches no file content through write(2), so it costs no
// inode update and raises no inotify event: watchers only see the release's deliberate touch.
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CHECK(call)                                                         \
  if ((call) != napi_ok) {                                                  \
    napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", "bad arguments: " #call); \
    return NULL;                                                            \
  }

// Byte ranges, as in src/backends/file/index.ts.
#define MAIN 0
#define WAITERS 3

#define PAGE 4096
#define MAGIC "locksmt2"
// Owners are at most 256 UTF-16 units, so at most 768 bytes of UTF-8.
#define OWNER_MAX 1024

// Everyone maps the same page of the same file, so this layout is the on-disk format too.
struct header {
  char magic[8];
  // Odd while a holder rewrites its record: inspect() takes no lock, so it retries on a torn read.
  uint32_t seq;
  uint32_t reserved;
  uint64_t fence;
  // The last exclusive holder's record. Shared holders' records (JSON after this page) older than its
  // fence are stale: an exclusive grant came after them.
  uint64_t holder_fence;
  double expires_at;
  int32_t pid;
  uint32_t owner_len;
  char owner[OWNER_MAX];
};

_Static_assert(sizeof(struct header) <= PAGE, "the header fits its page");

struct mapping {
  struct header *h;
};

static napi_value throw_errno(napi_env env, const char *what) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errno));
  napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", message);
  return NULL;
}

static napi_value bad_args(napi_env env, const char *usage) {
  napi_throw_type_error(env, "ERR_LOCKSMITH_NATIVE", usage);
  return NULL;
}

static void range(struct flock *fl, int type, off_t start, off_t len) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = start;
  fl->l_len = len;
}

static int set_lock(int fd, int type, off_t start, off_t len) {
  struct flock fl;
  range(&fl, type, start, len);
  return fcntl(fd, F_OFD_SETLK, &fl);
}

// 0 when `fl` could be set now, else the type of a conflicting lock another open file holds (1
// shared, 2 exclusive); -1 on error. Sets nothing.
static int probe(int fd, struct flock *fl) {
  if (fcntl(fd, F_OFD_GETLK, fl) != 0) return -1;
  return fl->l_type == F_UNLCK ? 0 : fl->l_type == F_RDLCK ? 1 : 2;
}

static int read_range(napi_env env, napi_value *argv, struct flock *fl, int *fd) {
  int32_t type;
  int64_t start, len;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok) return 0;
  if (napi_get_value_int32(env, argv[1], &type) != napi_ok) return 0;
  if (napi_get_value_int64(env, argv[2], &start) != napi_ok) return 0;
  if (napi_get_value_int64(env, argv[3], &len) != napi_ok) return 0;
  range(fl, type == 0 ? F_UNLCK : type == 1 ? F_RDLCK : F_WRLCK, start, len);
  return 1;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == want;
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

// lock(fd, type 0 unlock | 1 shared | 2 exclusive, start, len): true when set, false when another
// open file holds a conflicting lock.
static napi_value Lock(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  struct flock fl;
  int fd;
  if (!get_args(env, info, 4, argv) || !read_range(env, argv, &fl, &fd)) return bad_args(env, "lock(fd, type, start, len)");
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return boolean(env, 1);
  if (errno == EAGAIN || errno == EACCES) return boolean(env, 0);
  return throw_errno(env, "fcntl(F_OFD_SETLK)");
}

// probe(fd, type 1 shared | 2 exclusive, start, len): 0 when such a lock could be set now, else the
// type of a conflicting lock another open file holds (1 shared, 2 exclusive). Sets nothing.
static napi_value Probe(napi_env env, napi_callback_info info) {
  napi_value argv[4], result;
  struct flock fl;
  int fd;
  if (!get_args(env, info, 4, argv) || !read_range(env, argv, &fl, &fd)) return bad_args(env, "probe(fd, type, start, len)");
  int held = probe(fd, &fl);
  if (held < 0) return throw_errno(env, "fcntl(F_OFD_GETLK)");
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

// map(fd): the header page of this open file, shared with every other process that maps it. Grows
// a shorter file to one page first (growing never disturbs another mapping; shrinking would).
static napi_value Map(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  struct stat st;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return bad_args(env, "map(fd)");
  if (fstat(fd, &st) != 0) return throw_errno(env, "fstat");
  if (st.st_size < PAGE && ftruncate(fd, PAGE) != 0) return throw_errno(env, "ftruncate");
  void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page == MAP_FAILED) return throw_errno(env, "mmap");
  struct mapping *m = malloc(sizeof *m);
  if (!m) {
    munmap(page, PAGE);
    napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", "out of memory");
    return NULL;
  }
  m->h = page;
  if (napi_create_external(env, m, finalize_mapping, NULL, &result) != napi_ok) {
    finalize_mapping(env, m, NULL);
    napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", "napi_create_external failed");
    return NULL;
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

static uint64_t clock_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

// The next fence, under the lock that guards the header. A header never written (a new file, or one
// whose counter went with a removed file) starts from the wall clock in microseconds, so fences
// still only increase across files.
static uint64_t next_fence(struct header *h) {
  if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0) {
    memset(h, 0, sizeof *h);
    h->fence = clock_us();
    memcpy(h->magic, MAGIC, sizeof h->magic);
  }
  return ++h->fence;
}

static void write_record(struct header *h, const char *owner, size_t len, uint64_t fence, double expires_at) {
  uint32_t seq = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
  seq += (seq & 1u) ? 1u : 2u; // a writer that died mid-record left it odd
  __atomic_store_n(&h->seq, seq - 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  if (owner) {
    memcpy(h->owner, owner, len);
    h->owner_len = (uint32_t)len;
    h->holder_fence = fence;
  }
  h->expires_at = expires_at;
  h->pid = getpid();
  __atomic_store_n(&h->seq, seq, __ATOMIC_RELEASE);
}

static napi_value bigint(napi_env env, uint64_t value) {
  napi_value result;
  CHECK(napi_create_bigint_uint64(env, value, &result));
  return result;
}

// grant(fd, handle, path, ino, owner, expiresAt): the whole exclusive acquisition. Returns the fence;
// false when another open file holds the lock; null when this file is no longer the one at `path`
// (swept, or removed by hand), so the caller must reopen. Holds MAIN only when it returns a fence.
static napi_value Grant(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int fd;
  int64_t ino;
  double expires_at;
  char path[4096], owner[OWNER_MAX + 1];
  size_t path_len, owner_len;
  struct stat st;
  if (!get_args(env, info, 6, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_int64(env, argv[3], &ino) != napi_ok ||
      napi_get_value_string_utf8(env, argv[4], owner, sizeof owner, &owner_len) != napi_ok ||
      napi_get_value_double(env, argv[5], &expires_at) != napi_ok || owner_len >= OWNER_MAX || path_len >= sizeof path - 1) {
    return bad_args(env, "grant(fd, handle, path, ino, owner, expiresAt)");
  }
  struct header *h = header_of(env, argv[1]);
  if (!h) return bad_args(env, "grant(): not a mapped lock file");
  if (set_lock(fd, F_WRLCK, MAIN, 1) != 0) {
    if (errno == EAGAIN || errno == EACCES) return boolean(env, 0);
    return throw_errno(env, "fcntl(F_OFD_SETLK)");
  }
  // A sweeper unlinks the file while it holds MAIN, and someone may remove or replace it by hand: a
  // lock on a file no longer at the path guards nothing. (Its inode cannot be reused while we hold
  // it open, so comparing inode numbers is enough.)
  if (stat(path, &st) != 0 || (int64_t)st.st_ino != ino) {
    set_lock(fd, F_UNLCK, MAIN, 1);
    return null_value(env);
  }
  uint64_t fence = next_fence(h);
  write_record(h, owner, owner_len, fence, expires_at);
  return bigint(env, fence);
}

// next(handle): the next fence, for a shared holder that holds META.
static napi_value Next(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct header *h;
  if (!get_args(env, info, 1, argv) || !(h = header_of(env, argv[0]))) return bad_args(env, "next(handle)");
  return bigint(env, next_fence(h));
}

// renew(handle, expiresAt): the exclusive holder's new expiry.
static napi_value Renew(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct header *h;
  double expires_at;
  if (!get_args(env, info, 2, argv) || !(h = header_of(env, argv[0])) || napi_get_value_double(env, argv[1], &expires_at) != napi_ok) {
    return bad_args(env, "renew(handle, expiresAt)");
  }
  write_record(h, NULL, 0, 0, expires_at);
  return NULL;
}

// holder(handle): [owner, fence, expiresAt, pid] of the last exclusive holder, or null when there is
// none or its record kept changing under us.
static napi_value Holder(napi_env env, napi_callback_info info) {
  napi_value argv[1], result, values[4];
  struct header *h;
  char owner[OWNER_MAX];
  if (!get_args(env, info, 1, argv) || !(h = header_of(env, argv[0]))) return bad_args(env, "holder(handle)");
  for (int attempt = 0; attempt < 1000; attempt++) {
    uint32_t before = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
    if (before & 1u) continue;
    uint64_t fence = h->holder_fence;
    double expires_at = h->expires_at;
    int32_t pid = h->pid;
    uint32_t len = h->owner_len;
    if (len > OWNER_MAX) continue;
    memcpy(owner, h->owner, len);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) != before) continue;
    if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0 || before == 0) return null_value(env);
    CHECK(napi_create_string_utf8(env, owner, len, &values[0]));
    CHECK(napi_create_bigint_uint64(env, fence, &values[1]));
    CHECK(napi_create_double(env, expires_at, &values[2]));
    CHECK(napi_create_int32(env, pid, &values[3]));
    CHECK(napi_create_array_with_length(env, 4, &result));
    for (uint32_t i = 0; i < 4; i++) CHECK(napi_set_element(env, result, i, values[i]));
    return result;
  }
  return null_value(env);
}

// release(fd): drops every range this open file holds, then, only if some process has registered as
// waiting (a read lock on WAITERS), touches the file's timestamps: the change event their watchers
// wake on. Unlocking first, so that a waiter woken finds the lock free. Returns whether it touched.
static napi_value Release(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return bad_args(env, "release(fd)");
  if (set_lock(fd, F_UNLCK, 0, 0) != 0) return throw_errno(env, "fcntl(F_OFD_SETLK)");
  struct flock fl;
  range(&fl, F_WRLCK, WAITERS, 1);
  int waiters = probe(fd, &fl);
  if (waiters < 0) return throw_errno(env, "fcntl(F_OFD_GETLK)");
  if (waiters && futimens(fd, NULL) != 0) return throw_errno(env, "futimens");
  return boolean(env, waiters != 0);
}

// One inotify instance per Node environment (main thread or worker), read on its event loop.
struct watches {
  napi_env env;
  int fd;
  uv_poll_t poll;
  napi_ref listener;
  napi_async_context context;
};

static void closed(uv_handle_t *handle) {
  struct watches *w = handle->data;
  close(w->fd);
  free(w);
}

static void teardown(void *data) {
  struct watches *w = data;
  napi_delete_reference(w->env, w->listener);
  napi_async_destroy(w->env, w->context);
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, closed);
}

// Calls the listener once per event, through napi_make_callback so that the promises it settles run
// their reactions right after, as for any other I/O callback.
static void readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  struct watches *w = handle->data;
  napi_env env = w->env;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  if (status < 0) return;
  for (;;) {
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n <= 0) return; // EAGAIN: drained
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) != napi_ok) return;
    napi_value fn, recv, argv[2], result;
    if (napi_get_reference_value(env, w->listener, &fn) == napi_ok && napi_get_global(env, &recv) == napi_ok) {
      for (char *p = buf; p < buf + n;) {
        const struct inotify_event *e = (const struct inotify_event *)p;
        p += sizeof *e + e->len;
        if (napi_create_int32(env, e->wd, &argv[0]) != napi_ok || napi_create_uint32(env, e->mask, &argv[1]) != napi_ok) break;
        bool pending = false;
        // Nothing may stay pending once we return to the loop: it would surface in some unrelated call.
        if (napi_make_callback(env, w->context, recv, fn, 2, argv, &result) != napi_ok && napi_is_exception_pending(env, &pending) == napi_ok && pending) {
          napi_value error;
          napi_get_and_clear_last_exception(env, &error);
          napi_fatal_exception(env, error);
        }
      }
    }
    napi_close_handle_scope(env, scope);
  }
}

static struct watches *start_watches(napi_env env, napi_value listener) {
  struct watches *w = calloc(1, sizeof *w);
  uv_loop_t *loop;
  napi_value name;
  if (!w) return NULL;
  w->env = env;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    free(w);
    return NULL;
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &w->poll, w->fd) != 0) {
    close(w->fd);
    free(w);
    return NULL;
  }
  w->poll.data = w;
  napi_create_reference(env, listener, 1, &w->listener);
  napi_create_string_utf8(env, "locksmith:watch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  uv_poll_start(&w->poll, UV_READABLE, readable);
  // Like fs.watch({ persistent: false }): watching alone must not keep the process alive.
  uv_unref((uv_handle_t *)&w->poll);
  napi_add_env_cleanup_hook(env, teardown, w);
  napi_set_instance_data(env, w, NULL, NULL);
  return w;
}

// watch(path, listener): a watch descriptor for the file at `path` (the same one for every watch of
// that file in this environment). The first call's listener(wd, mask) gets every event of every
// watch; wd -1 means events were lost (queue overflow).
static napi_value Watch(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  char path[4096];
  size_t path_len;
  struct watches *w = NULL;
  if (!get_args(env, info, 2, argv) || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok || path_len >= sizeof path - 1) {
    return bad_args(env, "watch(path, listener)");
  }
  napi_get_instance_data(env, (void **)&w);
  if (!w && !(w = start_watches(env, argv[1]))) return throw_errno(env, "inotify");
  int wd = inotify_add_watch(w->fd, path, IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
  if (wd < 0) return throw_errno(env, "inotify_add_watch");
  CHECK(napi_create_int32(env, wd, &result));
  return result;
}

// unwatch(wd): stops a watch (an IN_IGNORED event follows); a watch already gone is no error.
static napi_value Unwatch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int wd;
  struct watches *w = NULL;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &wd) != napi_ok) return bad_args(env, "unwatch(wd)");
  napi_get_instance_data(env, (void **)&w);
  if (w) inotify_rm_watch(w->fd, wd);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"lock", NULL, Lock, NULL, NULL, NULL, napi_default, NULL},
      {"probe", NULL, Probe, NULL, NULL, NULL, napi_default, NULL},
      {"map", NULL, Map, NULL, NULL, NULL, napi_default, NULL},
      {"unmap", NULL, Unmap, NULL, NULL, NULL, napi_default, NULL},
      {"grant", NULL, Grant, NULL, NULL, NULL, napi_default, NULL},
      {"next", NULL, Next, NULL, NULL, NULL, napi_default, NULL},
      {"renew", NULL, Renew, NULL, NULL, NULL, napi_default, NULL},
      {"holder", NULL, Holder, NULL, NULL, NULL, napi_default, NULL},
      {"release", NULL, Release, NULL, NULL, NULL, napi_default, NULL},
      {"watch", NULL, Watch, NULL, NULL, NULL, napi_default, NULL},
      {"unwatch", NULL, Unwatch, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
