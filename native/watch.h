// inotify watches read on the event loop (included by file.c, which defines the helpers used here).
// Node's fs.watch cannot choose events: it would wake on every write and miss a crash. Without
// inotify (macOS, the BSDs) watch() throws and waiters fall back to polling.
#ifdef __linux__
#include <sys/inotify.h>
#define WATCHES 1

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

#else
#define WATCHES 0

static napi_value Watch(napi_env env, napi_callback_info info) {
  (void)info;
  return throw_code(env, ENOSYS, "watching lock files needs inotify");
}

static napi_value Unwatch(napi_env env, napi_callback_info info) {
  (void)info;
  return null_value(env);
}
#endif
