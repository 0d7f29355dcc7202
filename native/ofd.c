// Open file description (OFD) locks for Node, which has no flock/fcntl. OFD locks belong to an open
// file (not to the process, unlike classic POSIX locks), so two opens in one process conflict as two
// processes would, and the kernel drops them the moment the file is closed or its process dies.
// Only non-blocking calls: waiting happens in JavaScript, so the event loop never blocks.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                         \
  if ((call) != napi_ok) {                                                  \
    napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", "bad arguments: " #call); \
    return NULL;                                                            \
  }

static int read_args(napi_env env, napi_callback_info info, struct flock *fl, int *fd) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t type;
  int64_t start, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) return 0;
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok) return 0;
  if (napi_get_value_int32(env, argv[1], &type) != napi_ok) return 0;
  if (napi_get_value_int64(env, argv[2], &start) != napi_ok) return 0;
  if (napi_get_value_int64(env, argv[3], &len) != napi_ok) return 0;
  memset(fl, 0, sizeof *fl);
  fl->l_type = type == 0 ? F_UNLCK : type == 1 ? F_RDLCK : F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = start;
  fl->l_len = len;
  return 1;
}

static napi_value throw_errno(napi_env env, const char *what) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errno));
  napi_throw_error(env, "ERR_LOCKSMITH_NATIVE", message);
  return NULL;
}

// lock(fd, type 0 unlock | 1 shared | 2 exclusive, start, len): true when set, false when another
// open file holds a conflicting lock.
static napi_value Lock(napi_env env, napi_callback_info info) {
  struct flock fl;
  int fd;
  napi_value result;
  if (!read_args(env, info, &fl, &fd)) {
    napi_throw_type_error(env, "ERR_LOCKSMITH_NATIVE", "lock(fd, type, start, len)");
    return NULL;
  }
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
    CHECK(napi_get_boolean(env, 1, &result));
    return result;
  }
  if (errno == EAGAIN || errno == EACCES) {
    CHECK(napi_get_boolean(env, 0, &result));
    return result;
  }
  return throw_errno(env, "fcntl(F_OFD_SETLK)");
}

// probe(fd, type 1 shared | 2 exclusive, start, len): 0 when such a lock could be set now, else the
// type of a conflicting lock another open file holds (1 shared, 2 exclusive). Sets nothing.
static napi_value Probe(napi_env env, napi_callback_info info) {
  struct flock fl;
  int fd;
  napi_value result;
  if (!read_args(env, info, &fl, &fd)) {
    napi_throw_type_error(env, "ERR_LOCKSMITH_NATIVE", "probe(fd, type, start, len)");
    return NULL;
  }
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return throw_errno(env, "fcntl(F_OFD_GETLK)");
  CHECK(napi_create_int32(env, fl.l_type == F_UNLCK ? 0 : fl.l_type == F_RDLCK ? 1 : 2, &result));
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"lock", NULL, Lock, NULL, NULL, NULL, napi_default, NULL},
      {"probe", NULL, Probe, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, 2, props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
