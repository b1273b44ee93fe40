// The poll() backend: portable to every POSIX system. Keeps a dense pollfd
// array plus an fd -> slot index, so set() and remove() are O(1); wait()
// is O(registered descriptors), the price of poll() itself.
#include <errno.h>
#include <poll.h>

#include "poller/poller.h"

namespace smtpd {
namespace poller {
namespace {

class PollPoller final : public Poller {
 public:
  const char* name() const override { return "poll"; }

  int set(int fd, unsigned mask) override {
    if (fd < 0) {
      errno = EBADF;
      return -1;
    }
    if (static_cast<size_t>(fd) >= slot_.size())
      slot_.resize(static_cast<size_t>(fd) + 1, -1);
    short events = static_cast<short>(((mask & kRead) ? POLLIN : 0) |
                                      ((mask & kWrite) ? POLLOUT : 0));
    if (slot_[fd] < 0) {
      slot_[fd] = static_cast<int>(fds_.size());
      fds_.push_back(pollfd{fd, events, 0});
    } else {
      fds_[slot_[fd]].events = events;
    }
    return 0;
  }

  void remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slot_.size() || slot_[fd] < 0)
      return;
    int s = slot_[fd];
    slot_[fd] = -1;
    // Swap the last entry into the hole to keep the array dense.
    if (static_cast<size_t>(s) != fds_.size() - 1) {
      fds_[s] = fds_.back();
      slot_[fds_[s].fd] = s;
    }
    fds_.pop_back();
  }

  int wait(int timeout_ms, std::vector<PollEvent>& out) override {
    int n = ::poll(fds_.data(), static_cast<nfds_t>(fds_.size()), timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    int found = 0;
    for (size_t i = 0; i < fds_.size() && found < n; ++i) {
      short r = fds_[i].revents;
      if (!r) continue;
      ++found;
      bool err = (r & (POLLERR | POLLHUP | POLLNVAL)) != 0;
      out.push_back({fds_[i].fd, (r & POLLIN) != 0, (r & POLLOUT) != 0, err});
    }
    return found;
  }

 private:
  std::vector<pollfd> fds_;
  std::vector<int> slot_;
};

}  // namespace

std::unique_ptr<Poller> make_poll_poller() {
  return std::unique_ptr<Poller>(new PollPoller());
}

}  // namespace poller
}  // namespace smtpd
