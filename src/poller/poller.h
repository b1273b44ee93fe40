// Internal header. The readiness backends behind asyncore's loop().
//
// A Poller only turns the kernel's readiness reports into PollEvent records;
// it knows nothing of dispatchers. One file per backend (epoll, kqueue, poll,
// select); make_poller() picks one, honouring $SMTPD_POLLER.
#ifndef SMTPD_POLLER_POLLER_H
#define SMTPD_POLLER_POLLER_H

#include <memory>
#include <string>
#include <vector>

namespace smtpd {
namespace poller {

enum : unsigned { kRead = 1u, kWrite = 2u };

/// One ready descriptor. `error` is set on hang-up or a socket error; the
/// loop then lets the handler meet the error on its next read or write.
struct PollEvent {
  int fd;
  bool readable;
  bool writable;
  bool error;
};

class Poller {
 public:
  virtual ~Poller() = default;
  Poller() = default;
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  virtual const char* name() const = 0;
  /// Registers `fd` (or changes its interest) to `mask` (kRead | kWrite;
  /// 0 keeps it registered with no interest). Returns 0, or -1 with errno
  /// set (select refuses a descriptor past FD_SETSIZE with ERANGE).
  virtual int set(int fd, unsigned mask) = 0;
  /// Forgets `fd`. Must be called before the descriptor is closed.
  virtual void remove(int fd) = 0;
  /// Waits up to `timeout_ms` (-1: forever) and appends what is ready to
  /// `out`. Returns the number appended, 0 on timeout or EINTR, -1 with
  /// errno on failure.
  virtual int wait(int timeout_ms, std::vector<PollEvent>& out) = 0;
  /// Descriptors from this number on cannot be watched (select's
  /// FD_SETSIZE); -1 for no limit.
  virtual int fd_limit() const { return -1; }
};

std::unique_ptr<Poller> make_epoll_poller();
std::unique_ptr<Poller> make_kqueue_poller();
std::unique_ptr<Poller> make_poll_poller();
std::unique_ptr<Poller> make_select_poller();

/// The backend named `name` ("epoll", "kqueue", "poll", "select"), or the
/// best this system has when `name` is empty. Returns null for a name this
/// build lacks; `*error` then says why.
std::unique_ptr<Poller> make_poller(const std::string& name,
                                    std::string* error);

/// Backend names compiled into this build, best first.
std::vector<std::string> available_pollers();

}  // namespace poller
}  // namespace smtpd

#endif
