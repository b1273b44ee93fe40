// The select() backend: the last resort. select() cannot watch a descriptor
// at or past FD_SETSIZE, so set() refuses one with ERANGE instead of writing
// past the end of an fd_set. Keeps a dense (fd, mask) array plus an
// fd -> slot index, so set() and remove() are O(1) (remove() rescans only
// when it drops the highest descriptor); wait() copies the two master sets
// and walks the array, O(registered descriptors).
//
// select() has no hang-up bit: a peer that went away shows up as readable,
// and the handler meets the error on its next recv().
#include <errno.h>
#include <sys/select.h>
#include <sys/time.h>

#include "poller/poller.h"

namespace smtpd {
namespace poller {
namespace {

class SelectPoller final : public Poller {
 public:
  SelectPoller() {
    FD_ZERO(&read_set_);
    FD_ZERO(&write_set_);
  }

  const char* name() const override { return "select"; }
  int fd_limit() const override { return FD_SETSIZE; }

  int set(int fd, unsigned mask) override {
    if (fd < 0) {
      errno = EBADF;
      return -1;
    }
    if (fd >= FD_SETSIZE) {
      errno = ERANGE;
      return -1;
    }
    if (static_cast<size_t>(fd) >= slot_.size())
      slot_.resize(static_cast<size_t>(fd) + 1, -1);
    if (slot_[fd] < 0) {
      slot_[fd] = static_cast<int>(entries_.size());
      entries_.push_back(Entry{fd, mask});
      if (fd > max_fd_) max_fd_ = fd;
    } else {
      entries_[slot_[fd]].mask = mask;
    }
    if (mask & kRead)
      FD_SET(fd, &read_set_);
    else
      FD_CLR(fd, &read_set_);
    if (mask & kWrite)
      FD_SET(fd, &write_set_);
    else
      FD_CLR(fd, &write_set_);
    return 0;
  }

  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slot_.size() || slot_[fd] < 0)
      return;
    FD_CLR(fd, &read_set_);
    FD_CLR(fd, &write_set_);
    int s = slot_[fd];
    slot_[fd] = -1;
    // Swap the last entry into the hole to keep the array dense.
    if (static_cast<size_t>(s) != entries_.size() - 1) {
      entries_[s] = entries_.back();
      slot_[entries_[s].fd] = s;
    }
    entries_.pop_back();
    if (fd == max_fd_) {
      max_fd_ = -1;
      for (const Entry& e : entries_)
        if (e.fd > max_fd_) max_fd_ = e.fd;
    }
  }

  int wait(int timeout_ms, std::vector<PollEvent>& out) override {
    fd_set rd = read_set_;
    fd_set wr = write_set_;
    timeval tv;
    timeval* tvp = nullptr;
    if (timeout_ms >= 0) {
      tv.tv_sec = timeout_ms / 1000;
      tv.tv_usec = static_cast<suseconds_t>((timeout_ms % 1000) * 1000);
      tvp = &tv;
    }
    int n = ::select(max_fd_ + 1, &rd, &wr, nullptr, tvp);
    if (n < 0) return errno == EINTR ? 0 : -1;
    // n counts set bits across both sets, not descriptors.
    int bits = 0;
    int found = 0;
    for (size_t i = 0; i < entries_.size() && bits < n; ++i) {
      int fd = entries_[i].fd;
      bool r = FD_ISSET(fd, &rd) != 0;
      bool w = FD_ISSET(fd, &wr) != 0;
      if (!r && !w) continue;
      bits += (r ? 1 : 0) + (w ? 1 : 0);
      ++found;
      out.push_back({fd, r, w, false});
    }
    return found;
  }

 private:
  struct Entry {
    int fd;
    unsigned mask;
  };

  std::vector<Entry> entries_;
  std::vector<int> slot_;
  fd_set read_set_;
  fd_set write_set_;
  int max_fd_ = -1;
};

}  // namespace

std::unique_ptr<Poller> make_select_poller() {
  return std::unique_ptr<Poller>(new SelectPoller());
}

}  // namespace poller
}  // namespace smtpd
