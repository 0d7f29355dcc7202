// The lock file's first page: the fence counter and the exclusive holder's record, shared through
// mmap by every process that has the file open. An exclusive grant touches no file content through
// write(2), so it costs no inode update and raises no inotify event (pwrite measured ~2x the cost).
//
// A mapped page kills the process with SIGBUS when touched while the file cannot back it: the file
// was truncated under us, or the disk filled up under a sparse page. So the page is allocated before
// mapping (reserve: posix_fallocate), and every touch runs under a guard: a SIGBUS inside it jumps
// back and becomes an error return (then the caller re-reserves and retries once), never a signal.
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
  // The last exclusive holder's record. Shared holders' records (after this page) older than its
  // fence are stale: an exclusive grant came after them.
  uint64_t holder_fence;
  double expires_at;
  int32_t pid;
  uint32_t owner_len;
  char owner[OWNER_MAX];
};

_Static_assert(sizeof(struct header) <= PAGE, "the header fits its page");

// Allocates the page, so a full disk or quota shows here (ENOSPC, EDQUOT), and grows a shorter file
// to it (never shrinks: another process may have written its header). 0 or an errno.
static int reserve_page(int fd) {
#ifdef __APPLE__
  fstore_t store = {F_ALLOCATEALL, F_PEOFPOSMODE, 0, PAGE, 0};
  int err = fcntl(fd, F_PREALLOCATE, &store) == 0 ? 0 : errno == ENOTSUP ? 0 : errno;
#else
  int err = posix_fallocate(fd, 0, PAGE);
  if (err == EOPNOTSUPP || err == EINVAL) err = 0; // a filesystem that cannot preallocate: the guard still holds
#endif
  struct stat st;
  if (!err && fstat(fd, &st) != 0) err = errno;
  if (!err && st.st_size < PAGE && ftruncate(fd, PAGE) != 0) err = errno;
  return err;
}

// The guard: per thread (each worker has its own), armed only around touches of a mapped header.
static _Thread_local sigjmp_buf *guard;
static struct sigaction previous;
static pthread_once_t installed = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
  sigjmp_buf *armed = guard;
  if (armed) {
    guard = NULL;
    siglongjmp(*armed, 1); // SA_NODEFER: SIGBUS is not blocked here, so no mask to restore
  }
  // Not ours: hand it on as if we were never installed.
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else {
    signal(SIGBUS, SIG_DFL); // returning re-runs the faulting access, which now ends as it would have
  }
}

static void install_guard(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous);
}

typedef void (*header_op)(struct header *h, void *arg);

// Runs op on the mapped header; -1 when it faulted (SIGBUS), 0 otherwise.
static int guarded(struct header *h, header_op op, void *arg) {
  pthread_once(&installed, install_guard);
  sigjmp_buf here;
  if (sigsetjmp(here, 0) != 0) return -1;
  guard = &here;
  op(h, arg);
  guard = NULL;
  return 0;
}

// guarded(), and when it faults, the page reserved again (the file grown back) and one more try.
// 0 or an errno (EFAULT when it faulted twice).
static int touch(int fd, struct header *h, header_op op, void *arg) {
  if (guarded(h, op, arg) == 0) return 0;
  int err = reserve_page(fd);
  if (err) return err;
  return guarded(h, op, arg) == 0 ? 0 : EFAULT;
}

static uint64_t clock_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct grant_args {
  const char *owner; // NULL: only the expiry changes (renew)
  size_t owner_len;
  double expires_at;
  uint64_t fence; // out: the new fence; 0 when the counter is at its top
};

// The next fence, under the lock that guards the header. A header never written (a new file, or one
// whose counter went with a removed file) starts from the wall clock in microseconds, so fences
// still only increase across files. At 2^64-1 it stays there and gives 0: never wraps.
static void next_fence(struct header *h, void *arg) {
  struct grant_args *a = arg;
  if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0) {
    memset(h, 0, sizeof *h);
    h->fence = clock_us();
    memcpy(h->magic, MAGIC, sizeof h->magic);
  }
  a->fence = h->fence == UINT64_MAX ? 0 : ++h->fence;
}

static void write_record(struct header *h, void *arg) {
  struct grant_args *a = arg;
  if (a->owner) {
    next_fence(h, a);
    if (!a->fence) return;
  }
  uint32_t seq = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
  seq += (seq & 1u) ? 1u : 2u; // a writer that died mid-record left it odd
  __atomic_store_n(&h->seq, seq - 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  if (a->owner) {
    memcpy(h->owner, a->owner, a->owner_len);
    h->owner_len = (uint32_t)a->owner_len;
    h->holder_fence = a->fence;
  }
  h->expires_at = a->expires_at;
  h->pid = getpid();
  __atomic_store_n(&h->seq, seq, __ATOMIC_RELEASE);
}

struct holder_args {
  char owner[OWNER_MAX];
  uint32_t owner_len;
  uint64_t fence;
  double expires_at;
  int32_t pid;
  int found; // 1 a record, 0 none, -1 it kept changing
};

static void read_record(struct header *h, void *arg) {
  struct holder_args *a = arg;
  a->found = -1;
  for (int attempt = 0; attempt < 1000; attempt++) {
    uint32_t before = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
    if (before & 1u) continue;
    a->fence = h->holder_fence;
    a->expires_at = h->expires_at;
    a->pid = h->pid;
    a->owner_len = h->owner_len;
    if (a->owner_len > OWNER_MAX) continue;
    memcpy(a->owner, h->owner, a->owner_len);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) != before) continue;
    a->found = memcmp(h->magic, MAGIC, sizeof h->magic) == 0 && before != 0;
    return;
  }
}
