// The two locking paths, chosen at compile time (binding.gyp: LOCKSMITH_LOCKS=ofd|flock). Both lock
// an open file description: two opens in one process conflict as two processes would, and the kernel
// drops the locks the moment the file is closed or its process dies.
//   ofd    Linux open file description byte-range locks (F_OFD_SETLK): one file carries every range.
//   flock  flock(2), for macOS and the BSDs (built on Linux too, in CI): one lock per file, so
//          src/backends/file/ranges.ts keeps each range other than MAIN in a file of its own.
// Only non-blocking calls: waiting happens in JavaScript, so the event loop never blocks.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

// type: 0 unlock, 1 shared, 2 exclusive. 0 when set; -1 with errno (BUSY(errno): someone else holds it).
static int set_lock(int fd, int type, off_t start, off_t len);
// 0 when a lock of `type` could be set now, else the type of a conflicting lock another open file
// holds (1 shared, 2 exclusive); -1 on error. Sets nothing.
static int probe_lock(int fd, int type, off_t start, off_t len);

#ifdef LOCKSMITH_FLOCK
#define LOCK_KIND "flock"
#define LOCK_CALL "flock"
#define BUSY(e) ((e) == EWOULDBLOCK)

static int set_lock(int fd, int type, off_t start, off_t len) {
  (void)start; // flock has one lock per file: ranges.ts passes a file per range
  (void)len;
  return flock(fd, (type == 0 ? LOCK_UN : type == 1 ? LOCK_SH : LOCK_EX) | LOCK_NB);
}

// flock cannot ask who holds a lock, only try to take one: a lock that could be set is dropped
// again. Only called on descriptors that hold nothing themselves (a conversion would be no test).
static int probe_lock(int fd, int type, off_t start, off_t len) {
  if (set_lock(fd, type, start, len) == 0) return set_lock(fd, 0, 0, 0) == 0 ? 0 : -1;
  if (errno != EWOULDBLOCK) return -1;
  if (type == 1) return 2;
  if (set_lock(fd, 1, start, len) == 0) return set_lock(fd, 0, 0, 0) == 0 ? 1 : -1;
  return errno == EWOULDBLOCK ? 2 : -1;
}
#else
#define LOCK_KIND "ofd"
#define LOCK_CALL "fcntl(F_OFD_SETLK)"
#define BUSY(e) ((e) == EAGAIN || (e) == EACCES)

static void range(struct flock *fl, int type, off_t start, off_t len) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type == 0 ? F_UNLCK : type == 1 ? F_RDLCK : F_WRLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = start;
  fl->l_len = len;
}

static int set_lock(int fd, int type, off_t start, off_t len) {
  struct flock fl;
  range(&fl, type, start, len);
  return fcntl(fd, F_OFD_SETLK, &fl);
}

static int probe_lock(int fd, int type, off_t start, off_t len) {
  struct flock fl;
  range(&fl, type, start, len);
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return -1;
  return fl.l_type == F_UNLCK ? 0 : fl.l_type == F_RDLCK ? 1 : 2;
}
#endif
