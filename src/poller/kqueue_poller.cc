// UNTESTED HERE: written from the BSD kqueue(2)/kevent(2) manual pages on a
// Linux machine, where it cannot be compiled; build and run the poller tests
// on a BSD or macOS before trusting it.
//
// The kqueue backend (BSD, macOS). kqueue keeps one filter per direction,
// so set() caches each descriptor's mask and only adds or deletes the
// EVFILT_READ/EVFILT_WRITE filters that changed. wait() merges the separate
// read and write events of one descriptor into one PollEvent. EV_EOF (the
// peer hung up; fflags may hold the socket error) and EV_ERROR set `error`.
#include "config.h"

#ifdef SMTPD_HAVE_KQUEUE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <system_error>
#include <utility>

#include "poller/poller.h"

namespace smtpd {
namespace poller {
namespace {

// The field types differ between the BSDs (NetBSD's filter and flags are
// 32-bit unsigned, the others' are short and unsigned short).
using Filter = decltype(std::declval<struct kevent>().filter);
using Flags = decltype(std::declval<struct kevent>().flags);

class KqueuePoller final : public Poller {
 public:
  KqueuePoller() : kq_(::kqueue()), events_(256) {
    if (kq_ < 0)
      throw std::system_error(errno, std::generic_category(), "kqueue");
    // A kqueue is not inherited by fork(), but would survive exec().
    ::fcntl(kq_, F_SETFD, FD_CLOEXEC);
  }
  ~KqueuePoller() override { ::close(kq_); }

  const char* name() const override { return "kqueue"; }

  int set(int fd, unsigned mask) override {
    if (fd < 0) {
      errno = EBADF;
      return -1;
    }
    if (static_cast<size_t>(fd) >= registered_.size()) {
      registered_.resize(static_cast<size_t>(fd) + 1, 0);
      merged_.resize(static_cast<size_t>(fd) + 1, -1);
    }
    // registered_ holds mask + 1 so that 0 means "not registered".
    unsigned old = registered_[fd] ? registered_[fd] - 1u : 0u;
    mask &= kRead | kWrite;
    // One change per kevent() call, so a failure names exactly the filter
    // that failed and the cache stays true to the kernel's state.
    if (change(fd, EVFILT_READ, kRead, old, mask, &old) < 0 ||
        change(fd, EVFILT_WRITE, kWrite, old, mask, &old) < 0) {
      int saved = errno;
      registered_[fd] = static_cast<unsigned char>(old + 1);
      errno = saved;
      return -1;
    }
    registered_[fd] = static_cast<unsigned char>(mask + 1);
    return 0;
  }

  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= registered_.size() ||
        !registered_[fd])
      return;
    unsigned old = registered_[fd] - 1u;
    registered_[fd] = 0;
    // A failed EV_DELETE changes nothing; closing the descriptor would drop
    // its filters anyway.
    if (old & kRead) submit(fd, EVFILT_READ, EV_DELETE);
    if (old & kWrite) submit(fd, EVFILT_WRITE, EV_DELETE);
  }

  int wait(int timeout_ms, std::vector<PollEvent>& out) override {
    timespec ts;
    timespec* tsp = nullptr;
    if (timeout_ms >= 0) {
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
      tsp = &ts;
    }
    int n = ::kevent(kq_, nullptr, 0, events_.data(),
                     static_cast<int>(events_.size()), tsp);
    if (n < 0) return errno == EINTR ? 0 : -1;
    size_t first = out.size();
    for (int i = 0; i < n; ++i) {
      const struct kevent& e = events_[i];
      int fd = static_cast<int>(e.ident);
      // A descriptor removed since the kernel queued the event, or an
      // identifier that is not ours: skip it.
      if (fd < 0 || static_cast<size_t>(fd) >= registered_.size() ||
          !registered_[fd])
        continue;
      int slot = merged_[fd];
      if (slot < 0) {
        slot = static_cast<int>(out.size() - first);
        merged_[fd] = slot;
        out.push_back({fd, false, false, false});
      }
      PollEvent& pe = out[first + static_cast<size_t>(slot)];
      if (e.flags & EV_ERROR) {
        pe.error = true;
      } else if (e.filter == EVFILT_READ) {
        pe.readable = true;
      } else if (e.filter == EVFILT_WRITE) {
        pe.writable = true;
      }
      if (e.flags & EV_EOF) pe.error = true;
    }
    for (size_t i = first; i < out.size(); ++i) merged_[out[i].fd] = -1;
    if (n == static_cast<int>(events_.size()) && events_.size() < 65536)
      events_.resize(events_.size() * 2);
    return static_cast<int>(out.size() - first);
  }

 private:
  // Adds or deletes `filter` when the `bit` of the mask changed from `old`
  // to `want`; on success records the new bit in `*now`.
  int change(int fd, Filter filter, unsigned bit, unsigned old, unsigned want,
             unsigned* now) {
    if ((old & bit) == (want & bit)) return 0;
    if (want & bit) {
      if (submit(fd, filter, EV_ADD) < 0) return -1;
      *now |= bit;
    } else {
      // ENOENT: the kernel already dropped the filter; the cache was stale.
      if (submit(fd, filter, EV_DELETE) < 0 && errno != ENOENT) return -1;
      *now &= ~bit;
    }
    return 0;
  }

  // Applies one change. With no room for events, kevent() reports a failed
  // change as -1 with errno rather than as an EV_ERROR event.
  int submit(int fd, Filter filter, Flags flags) {
    struct kevent kev;
    // Field by field rather than EV_SET, whose udata type and form (macro
    // or compound literal) differ between the BSDs.
    memset(&kev, 0, sizeof kev);
    kev.ident = static_cast<uintptr_t>(fd);
    kev.filter = filter;
    kev.flags = flags;
    int r;
    do {
      r = ::kevent(kq_, &kev, 1, nullptr, 0, nullptr);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
  }

  int kq_;
  std::vector<struct kevent> events_;
  std::vector<unsigned char> registered_;
  std::vector<int> merged_;  // fd -> index of its PollEvent during wait()
};

}  // namespace

std::unique_ptr<Poller> make_kqueue_poller() {
  return std::unique_ptr<Poller>(new KqueuePoller());
}

}  // namespace poller
}  // namespace smtpd
#endif
