// The reactor: socket_map, dispatcher and loop(). See smtpd/asyncore.h.
#include "smtpd/asyncore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

#include "config.h"
#include "poller/poller.h"

namespace smtpd {
namespace asyncore {
namespace {

bool is_disconnect(int err) {
  return err == ECONNRESET || err == ENOTCONN || err == ESHUTDOWN ||
         err == ECONNABORTED || err == EPIPE || err == EBADF ||
         err == ETIMEDOUT;
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

bool timer_after(const socket_map::Timer& a, const socket_map::Timer& b) {
  return a.when > b.when;
}

}  // namespace

double monotonic() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

// Sockets from accept4() already have both flags: only look, then.
bool set_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
    return false;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0) return false;
  return (fdfl & FD_CLOEXEC) || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) >= 0;
}

std::string format_host(const sockaddr* addr, socklen_t /*len*/) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr,
              buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6,
              &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf,
              sizeof buf);
  } else if (addr->sa_family == AF_UNIX) {
    return "unix";
  }
  return buf;
}

int address_port(const sockaddr* addr) {
  if (addr->sa_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(addr)->sin_port);
  if (addr->sa_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port);
  return -1;
}

int local_port(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return -1;
  return address_port(reinterpret_cast<const sockaddr*>(&ss));
}

std::string format_address(const sockaddr* addr, socklen_t len) {
  std::string host = format_host(addr, len);
  int port = address_port(addr);
  if (port < 0) return host;
  if (addr->sa_family == AF_INET6) host = "[" + host + "]";
  return host + ":" + std::to_string(port);
}

// ---------------------------------------------------------------- socket_map

static std::unique_ptr<poller::Poller> make_named_poller(const std::string& n) {
  std::string err;
  std::unique_ptr<poller::Poller> p = poller::make_poller(n, &err);
  if (!p) throw std::runtime_error(err);
  return p;
}

static std::string poller_from_env() {
  const char* env = getenv("SMTPD_POLLER");
  return env ? env : "";
}

socket_map::socket_map() : poller_(make_named_poller(poller_from_env())) {}

socket_map::socket_map(const std::string& name)
    : poller_(make_named_poller(name)) {}

socket_map::~socket_map() {
  close_all();
  reap();
}

const char* socket_map::poller_name() const { return poller_->name(); }

bool socket_map::can_watch(int fd) const {
  int limit = poller_->fd_limit();
  return limit < 0 || fd < limit;
}

dispatcher* socket_map::find(int fd) const {
  auto it = map_.find(fd);
  return it == map_.end() ? nullptr : it->second;
}

void socket_map::add(dispatcher* d) {
  map_[d->fd_] = d;
  d->in_map_ = true;
  d->unwatched_ = false;
  if (d->deadline_ >= 0) schedule(d, d->deadline_);  // set before the socket
  touch(d);
}

void socket_map::remove(dispatcher* d) {
  if (!d->in_map_) return;
  auto it = map_.find(d->fd_);
  if (it != map_.end() && it->second == d) map_.erase(it);
  poller_->remove(d->fd_);
  d->in_map_ = false;
  d->registered_mask_ = 0;
  if (d->dirty_) {
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), d), dirty_.end());
    d->dirty_ = false;
  }
  disarm(d);
}

void socket_map::touch(dispatcher* d) {
  if (d->dirty_ || !d->in_map_) return;
  d->dirty_ = true;
  dirty_.push_back(d);
}

void socket_map::take_ownership(dispatcher* d) {
  d->owned_ = true;
  if (!d->in_map_ && d->fd_ < 0) graveyard_.push_back(d);
}

// One heap entry per armed dispatcher, found again by descriptor and serial,
// so a closed dispatcher leaves only a stale entry, never a dangling pointer.
// Re-arming later (every command) keeps the old entry and re-queues it when
// it comes due; stale entries are swept once they outnumber the live ones.
void socket_map::schedule(dispatcher* d, double when) {
  if (d->timer_serial_ != 0 && when >= d->queued_when_) return;
  if (d->timer_serial_ == 0) ++armed_;
  d->timer_serial_ = ++timer_serial_;
  d->queued_when_ = when;
  timers_.push_back({when, d->timer_serial_, d->fd_});
  std::push_heap(timers_.begin(), timers_.end(), timer_after);
  if (timers_.size() > 1024 && timers_.size() > 2 * armed_) sweep_timers();
}

void socket_map::sweep_timers() {
  auto stale = [this](const Timer& t) {
    dispatcher* d = find(t.fd);
    return !d || d->timer_serial_ != t.serial;
  };
  timers_.erase(std::remove_if(timers_.begin(), timers_.end(), stale),
                timers_.end());
  std::make_heap(timers_.begin(), timers_.end(), timer_after);
}

void socket_map::disarm(dispatcher* d) {
  if (d->timer_serial_ != 0 && armed_ > 0) --armed_;
  d->timer_serial_ = 0;
}

// Deferred work and interest changes, for dispatchers touched this pass.
// handle_deferred() may touch others (a relay pushing to its client), so
// the list is drained until it stays empty.
void socket_map::apply_dirty() {
  for (int rounds = 0; !dirty_.empty() && rounds < 16; ++rounds) {
    std::vector<dispatcher*> batch;
    batch.swap(dirty_);
    for (dispatcher* d : batch) d->dirty_ = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      dispatcher* d = batch[i];
      if (!d->in_map_) continue;
      d->call_guarded(&dispatcher::handle_deferred);
    }
    for (dispatcher* d : batch) {
      if (!d->in_map_ || d->dirty_ || d->unwatched_) continue;
      unsigned mask = 0;
      if (d->accepting) {
        if (d->readable()) mask |= poller::kRead;
      } else if (d->connecting) {
        mask = poller::kWrite;
      } else {
        if (d->readable()) mask |= poller::kRead;
        if (d->writable()) mask |= poller::kWrite;
      }
      if (d->registered_mask_ == (mask | 4u)) continue;
      if (poller_->set(d->fd_, mask) < 0) {
        int err = errno;
        fprintf(stderr, "smtpd: cannot watch %s: %s\n", d->describe().c_str(),
                strerror(err));
        d->close();
        continue;
      }
      d->registered_mask_ = mask | 4u;
    }
  }
}

void socket_map::dispatch(const poller::PollEvent& ev) {
  dispatcher* d = find(ev.fd);
  if (!d) return;
  bool want_read = (d->registered_mask_ & poller::kRead) != 0;
  bool want_write = (d->registered_mask_ & poller::kWrite) != 0;
  bool read = ev.readable || (ev.error && want_read);
  bool write = ev.writable || (ev.error && want_write);
  if (read) d->handle_read_event();
  // The read handler may have closed d, and a new dispatcher may even have
  // been given the same descriptor number: look it up again.
  if (write && find(ev.fd) == d) d->handle_write_event();
  if (ev.error && !read && !write && find(ev.fd) == d)
    d->handle_expt_event();
  if (find(ev.fd) == d) touch(d);
}

int socket_map::next_timeout(int timeout_ms) const {
  if (!dirty_.empty()) return 0;
  if (timers_.empty()) return timeout_ms;
  double wait = timers_.front().when - monotonic();
  int ms = wait <= 0 ? 0 : static_cast<int>(wait * 1000) + 1;
  return (timeout_ms < 0 || ms < timeout_ms) ? ms : timeout_ms;
}

void socket_map::run_timers() {
  double now = monotonic();
  while (!timers_.empty() && timers_.front().when <= now) {
    std::pop_heap(timers_.begin(), timers_.end(), timer_after);
    Timer t = timers_.back();
    timers_.pop_back();
    dispatcher* d = find(t.fd);
    if (!d || d->timer_serial_ != t.serial) continue;  // stale
    disarm(d);
    if (d->deadline_ < 0) continue;
    if (d->deadline_ > now) {  // re-armed later since this was queued
      schedule(d, d->deadline_);
      continue;
    }
    d->deadline_ = -1;
    d->call_guarded(&dispatcher::handle_timeout);
    if (d->in_map_) touch(d);
  }
}

void socket_map::reap() {
  if (graveyard_.empty()) return;
  std::vector<dispatcher*> dead;
  dead.swap(graveyard_);
  for (dispatcher* d : dead) delete d;
}

bool socket_map::poll_once(int timeout_ms) {
  apply_dirty();
  reap();
  if (map_.empty()) return false;
  events_.clear();
  int n = poller_->wait(next_timeout(timeout_ms), events_);
  if (n < 0) fatal("poller wait failed");
  for (const poller::PollEvent& ev : events_) dispatch(ev);
  run_timers();
  apply_dirty();
  reap();
  return !map_.empty();
}

void socket_map::close_all() {
  std::vector<dispatcher*> all;
  all.reserve(map_.size());
  for (auto& kv : map_) all.push_back(kv.second);
  for (dispatcher* d : all) d->close();
}

void socket_map::fatal(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

socket_map& default_map() {
  static socket_map* m = new socket_map();  // lives until exit, like Python's
  return *m;
}

void loop(double timeout, long count, socket_map* map) {
  socket_map& m = map ? *map : default_map();
  int ms = timeout < 0 ? -1 : static_cast<int>(timeout * 1000);
  try {
    for (long i = 0; count < 0 || i < count; ++i) {
      if (!m.poll_once(ms) || m.stopping()) break;
    }
  } catch (const ExitNow&) {
  }
}

// ---------------------------------------------------------------- dispatcher

dispatcher::dispatcher(socket_map* map) : map_(map ? map : &default_map()) {}

dispatcher::dispatcher(int fd, socket_map* map)
    : map_(map ? map : &default_map()) {
  set_socket(fd);
  connected = true;
}

dispatcher::~dispatcher() {
  if (in_map_) map_->remove(this);
  if (fd_ >= 0) ::close(fd_);
}

void dispatcher::add_to_map() { map_->add(this); }

void dispatcher::create_socket(int family, int type) {
  int fd = ::socket(family, type, 0);
  if (fd < 0) throw_errno("socket");
  family_ = family;
  set_socket(fd);
}

void dispatcher::set_socket(int fd) {
  if (!set_nonblocking(fd)) {
    int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "fcntl");
  }
  fd_ = fd;
  add_to_map();
}

void dispatcher::set_reuse_addr() {
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
}

void dispatcher::bind(const sockaddr* addr, socklen_t len) {
  if (::bind(fd_, addr, len) < 0) throw_errno("bind");
}

void dispatcher::listen(int backlog) {
  if (::listen(fd_, backlog) < 0) throw_errno("listen");
  accepting = true;
  map_->touch(this);
}

void dispatcher::connect(const sockaddr* addr, socklen_t len) {
  connected = false;
  connecting = true;
  int rc;
  do {
    rc = ::connect(fd_, addr, len);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    connecting = false;
    connected = true;
    map_->touch(this);
    call_guarded(&dispatcher::handle_connect);
    return;
  }
  if (errno == EINPROGRESS || errno == EALREADY || errno == EWOULDBLOCK) {
    map_->touch(this);
    return;
  }
  throw_errno("connect");
}

int dispatcher::accept(sockaddr_storage* addr, socklen_t* len) {
  *len = sizeof(sockaddr_storage);
  int fd;
  do {
#ifdef SMTPD_HAVE_ACCEPT4
    fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(addr), len,
                   SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    fd = ::accept(fd_, reinterpret_cast<sockaddr*>(addr), len);
    if (fd >= 0 && !set_nonblocking(fd)) {
      ::close(fd);
      fd = -1;
    }
#endif
  } while (fd < 0 && errno == EINTR);
  return fd;
}

ssize_t dispatcher::send(const void* data, size_t len) {
  ssize_t n;
  do {
#ifdef MSG_NOSIGNAL
    n = ::send(fd_, data, len, MSG_NOSIGNAL);
#else
    n = ::send(fd_, data, len, 0);
#endif
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
  if (is_disconnect(errno)) {
    handle_close();
    return 0;
  }
  throw_errno("send");
}

ssize_t dispatcher::recv(void* buf, size_t len) {
  ssize_t n;
  do {
    n = ::recv(fd_, buf, len, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) return n;
  if (n == 0) {
    handle_close();
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
  if (is_disconnect(errno)) {
    handle_close();
    return 0;
  }
  throw_errno("recv");
}

void dispatcher::stop_watching() {
  if (!in_map_) return;
  map_->poller_->remove(fd_);
  registered_mask_ = 0;
  unwatched_ = true;
}

void dispatcher::close() {
  connected = accepting = connecting = false;
  deadline_ = -1;
  if (in_map_) map_->remove(this);
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    if (owned_) map_->graveyard_.push_back(this);
  }
}

void dispatcher::handle_read() {}
void dispatcher::handle_write() {}
void dispatcher::handle_expt() { handle_close(); }
void dispatcher::handle_connect() {}
void dispatcher::handle_close() { close(); }
void dispatcher::handle_timeout() { close(); }

void dispatcher::handle_accept() {
  sockaddr_storage addr;
  socklen_t len;
  int fd = accept(&addr, &len);
  if (fd >= 0) handle_accepted(fd, addr, len);
}

void dispatcher::handle_accepted(int fd, const sockaddr_storage&, socklen_t) {
  ::close(fd);  // nobody asked for connections
}

void dispatcher::handle_error(const std::exception& e) {
  fprintf(stderr, "smtpd: error in %s: %s; closing it\n", describe().c_str(),
          e.what());
  close();
}

std::string dispatcher::describe() const {
  if (fd_ >= 0) {
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
      return format_address(reinterpret_cast<sockaddr*>(&ss), len);
  }
  return "fd " + std::to_string(fd_);
}

// Every handler runs through here: an exception closes this dispatcher only.
void dispatcher::call_guarded(void (dispatcher::*fn)()) {
  try {
    (this->*fn)();
  } catch (const ExitNow&) {
    throw;
  } catch (const std::exception& e) {
    try {
      handle_error(e);
    } catch (...) {
      close();
    }
  }
}

void dispatcher::handle_read_event() {
  if (accepting) {
    call_guarded(&dispatcher::handle_accept);
    return;
  }
  if (connecting) {
    handle_write_event();
    return;
  }
  call_guarded(&dispatcher::handle_read);
}

void dispatcher::handle_write_event() {
  if (accepting) return;
  if (connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    connecting = false;
    if (err != 0) {
      errno = err;
      call_guarded(&dispatcher::handle_close);
      return;
    }
    connected = true;
    call_guarded(&dispatcher::handle_connect);
    return;
  }
  call_guarded(&dispatcher::handle_write);
}

void dispatcher::handle_expt_event() {
  int err = 0;
  socklen_t len = sizeof err;
  if (fd_ >= 0) getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) errno = err;
  call_guarded(err ? &dispatcher::handle_close : &dispatcher::handle_expt);
}

void dispatcher::mark_dirty() { map_->touch(this); }

void dispatcher::set_timeout(double seconds) {
  if (seconds < 0) {
    deadline_ = -1;  // the queued entry is dropped when it comes due
    return;
  }
  deadline_ = monotonic() + seconds;
  if (in_map_) map_->schedule(this, deadline_);
}

}  // namespace asyncore
}  // namespace smtpd
