// Public header. A single-threaded reactor shaped like Python's asyncore:
// a socket map of dispatchers, each with readable()/writable() predicates
// and handle_* callbacks, driven by loop().
//
// Differences from asyncore, all for scale: the loop re-asks
// readable()/writable() only of dispatchers that ran or were touched in the
// pass (mark_dirty()), so a pass costs O(ready + touched), not O(all); the
// backend is epoll, kqueue, poll or select ($SMTPD_POLLER); and a dispatcher
// may carry one deadline (set_timeout), reported through handle_timeout().
#ifndef SMTPD_ASYNCORE_H
#define SMTPD_ASYNCORE_H

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace smtpd {

namespace poller {
class Poller;
struct PollEvent;
}  // namespace poller

namespace asyncore {

class dispatcher;

/// Thrown from a handler to leave loop() (asyncore's ExitNow).
struct ExitNow : std::exception {
  const char* what() const noexcept override { return "ExitNow"; }
};

/// The socket map: every open dispatcher by descriptor, the poller that
/// watches them, and the deadlines. Not thread-safe; one per thread.
class socket_map {
 public:
  /// Uses the backend named by $SMTPD_POLLER, else the best one compiled in.
  /// Throws std::runtime_error for an unknown name.
  socket_map();
  explicit socket_map(const std::string& poller_name);
  ~socket_map();
  socket_map(const socket_map&) = delete;
  socket_map& operator=(const socket_map&) = delete;

  const char* poller_name() const;
  /// True if the poller can watch `fd` (select cannot past FD_SETSIZE).
  bool can_watch(int fd) const;
  size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  dispatcher* find(int fd) const;

  /// Hands ownership of `d` to the map: it is deleted after it closes (at the
  /// end of the loop pass, never inside its own handler).
  template <class T>
  T* adopt(std::unique_ptr<T> d) {
    T* raw = d.release();
    take_ownership(raw);
    return raw;
  }

  /// Runs one pass: apply interest changes, wait up to `timeout_ms`
  /// (-1: until something happens), dispatch events and expired deadlines,
  /// free closed dispatchers. Returns false once the map is empty.
  bool poll_once(int timeout_ms);

  /// Asks loop() to return after the current pass.
  void stop() { stop_ = true; }
  bool stopping() const { return stop_; }
  void clear_stop() { stop_ = false; }

  /// Closes every dispatcher in the map (asyncore.close_all).
  void close_all();

  /// Called when the poller itself fails (not EINTR): default rethrows.
  static void fatal(const char* what);

  /// A queued deadline (internal; public only for the heap's comparator).
  struct Timer {
    double when;
    uint64_t serial;
    int fd;
  };

 private:
  friend class dispatcher;

  void add(dispatcher* d);
  void remove(dispatcher* d);
  void touch(dispatcher* d);
  void take_ownership(dispatcher* d);
  void schedule(dispatcher* d, double when);
  void disarm(dispatcher* d);
  void sweep_timers();
  void apply_dirty();
  void dispatch(const poller::PollEvent& ev);
  void run_timers();
  int next_timeout(int timeout_ms) const;
  void reap();

  std::unique_ptr<poller::Poller> poller_;
  std::unordered_map<int, dispatcher*> map_;
  std::vector<dispatcher*> dirty_;
  std::vector<dispatcher*> graveyard_;
  std::vector<Timer> timers_;  // a min-heap on `when`; stale entries skipped
  std::vector<poller::PollEvent> events_;
  uint64_t timer_serial_ = 0;
  size_t armed_ = 0;  // dispatchers with a queued timer
  bool stop_ = false;
};

/// The map used when none is given, created on first use.
socket_map& default_map();

/// Seconds on a monotonic clock.
double monotonic();

/// Runs passes until the map is empty, stop() is called, ExitNow is thrown,
/// or `count` passes ran (count < 0: no limit). `timeout` is the longest
/// single wait in seconds (asyncore's meaning), < 0 for none.
void loop(double timeout = 30.0, long count = -1, socket_map* map = nullptr);

/// A socket and its event handlers. Subclass and override handle_*.
/// Ownership: the map never owns a dispatcher unless it was adopt()ed.
/// A dispatcher closes its socket in close() or its destructor.
class dispatcher {
 public:
  explicit dispatcher(socket_map* map = nullptr);
  /// Wraps an already connected socket (from accept), making it
  /// non-blocking and registering it in the map.
  dispatcher(int fd, socket_map* map = nullptr);
  virtual ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  // -- socket operations; failures throw std::system_error --
  void create_socket(int family = AF_INET, int type = SOCK_STREAM);
  void set_socket(int fd);
  void set_reuse_addr();
  void bind(const sockaddr* addr, socklen_t len);
  void listen(int backlog);
  /// Starts a non-blocking connect. Success or failure arrives as
  /// handle_connect() or handle_close() (after handle_connect_error).
  void connect(const sockaddr* addr, socklen_t len);
  /// Returns the new descriptor, or -1 when nothing is pending (EAGAIN,
  /// ECONNABORTED) or on failure, with errno set.
  int accept(sockaddr_storage* addr, socklen_t* len);
  /// Returns bytes sent; 0 when the socket is full. A disconnect error
  /// calls handle_close() and returns 0.
  ssize_t send(const void* data, size_t len);
  /// Returns bytes read; 0 on end of file or a disconnect error, after
  /// handle_close(); -1 when nothing is there yet (EAGAIN).
  ssize_t recv(void* buf, size_t len);
  /// Deregisters, closes the socket and (if adopted) queues deletion.
  /// Safe to call more than once and from inside a handler.
  void close();

  // -- predicates and handlers, as in asyncore --
  virtual bool readable() { return true; }
  virtual bool writable() { return true; }
  virtual void handle_read();
  virtual void handle_write();
  virtual void handle_expt();
  virtual void handle_connect();
  virtual void handle_accept();
  virtual void handle_accepted(int fd, const sockaddr_storage& addr,
                               socklen_t len);
  virtual void handle_close();
  /// A handler threw: logs one line naming this dispatcher, then closes it.
  virtual void handle_error(const std::exception& e);
  /// The deadline set by set_timeout() passed. Default: close().
  virtual void handle_timeout();
  /// Called once per pass after mark_dirty(), before interest is
  /// recomputed; async_chat flushes replies and resumes input here.
  virtual void handle_deferred() {}

  // -- loop plumbing --
  void handle_read_event();
  void handle_write_event();
  void handle_expt_event();
  /// Re-asks readable()/writable() at the end of this pass and runs
  /// handle_deferred(). Call after changing anything they depend on.
  void mark_dirty();
  /// Takes the descriptor out of the poller but keeps it open and in the
  /// map (no more events, deadlines still fire). For a peer that hung up
  /// while input waits to be processed.
  void stop_watching();
  /// Arms the single deadline `seconds` from now (< 0 disarms).
  void set_timeout(double seconds);
  double deadline() const { return deadline_; }

  int fileno() const { return fd_; }
  socket_map& map() const { return *map_; }
  /// "peer-ip:port" or "fd N", for log lines.
  virtual std::string describe() const;

  bool connected = false;
  bool accepting = false;
  bool connecting = false;
  bool closing = false;

 protected:
  /// Lets a subclass choose the descriptor's family for log lines.
  int family_ = AF_UNSPEC;

 private:
  friend class socket_map;
  void add_to_map();
  void call_guarded(void (dispatcher::*fn)());

  socket_map* map_;
  int fd_ = -1;
  unsigned registered_mask_ = 0;  // what the poller was last told, +4 if added
  bool in_map_ = false;
  bool dirty_ = false;
  bool owned_ = false;
  bool unwatched_ = false;
  double deadline_ = -1;
  double queued_when_ = 0;      // when its heap entry comes due
  uint64_t timer_serial_ = 0;   // its heap entry, 0 if none
};

/// Sets O_NONBLOCK and FD_CLOEXEC on `fd`. Returns false with errno on failure.
bool set_nonblocking(int fd);

/// Formats an address as "ip:port" ("[ip]:port" for IPv6).
std::string format_address(const sockaddr* addr, socklen_t len);
/// The numeric host part only.
std::string format_host(const sockaddr* addr, socklen_t len);
/// The port of an IPv4 or IPv6 address; -1 for other families.
int address_port(const sockaddr* addr);
/// The port `fd` is bound to (getsockname); -1 if none.
int local_port(int fd);

}  // namespace asyncore
}  // namespace smtpd

#endif
