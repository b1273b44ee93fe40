// The smtpd command: parse the reference's command line, bind, give up
// root, then run the reactor until SIGTERM/SIGINT (finish transactions in
// flight, then exit 0; a second signal exits at once).
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "config.h"
#ifdef SMTPD_HAVE_PDEATHSIG
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>
#include <vector>

#include "cli.h"
#include "privs.h"
#include "smtpd/smtpd.h"

namespace {

using smtpd::asyncore::socket_map;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &b, 1);
  (void)ignored;
  errno = saved;
}

// Reads the self-pipe: the first SIGTERM/SIGINT starts a graceful
// shutdown, a second one ends the loop at once.
class SignalWatcher : public smtpd::asyncore::dispatcher {
 public:
  SignalWatcher(socket_map* map, smtpd::SMTPServer* server, double grace)
      : dispatcher(g_signal_pipe[0], map), server_(server), grace_(grace) {}

  bool writable() override { return false; }

  void handle_read() override {
    unsigned char buf[64];
    ssize_t n = ::read(fileno(), buf, sizeof buf);
    bool stop_signal = false;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == SIGCHLD)
        reap_workers();
      else
        stop_signal = true;
    }
    if (!stop_signal) return;
    if (shutting_down) {
      map().stop();
      return;
    }
    shutting_down = true;
    server_->shutdown_gracefully();
    set_timeout(grace_);
  }

  // A worker that ends on its own is reported; it is not restarted.
  void reap_workers() {
    for (pid_t& pid : workers) {
      int ws;
      // Only our workers: MailmanProxy reaps its own children.
      if (pid <= 0 || waitpid(pid, &ws, WNOHANG) != pid) continue;
      if (WIFSIGNALED(ws))
        fprintf(stderr, "smtpd: worker %d killed by signal %d\n",
                static_cast<int>(pid), WTERMSIG(ws));
      else
        fprintf(stderr, "smtpd: worker %d exited with status %d\n",
                static_cast<int>(pid), WEXITSTATUS(ws));
      worker_failed = true;
      pid = -1;
    }
  }

  std::vector<pid_t> workers;

  bool worker_failed = false;

  void handle_timeout() override {
    fprintf(stderr, "smtpd: %zu session(s) still open after %.0f s; exiting\n",
            server_->channel_count, grace_);
    map().stop();
  }

  bool shutting_down = false;

 private:
  smtpd::SMTPServer* server_;
  double grace_;
};

// glibc hands a freed block of a few MiB back to the kernel (munmap, or
// trimming the heap top) and faults it in again for the next big message:
// about 500 page faults per MiB received. Keep up to 8 MiB for reuse.
void keep_freed_memory() {
#ifdef M_TRIM_THRESHOLD
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
}

void raise_fd_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool install_signals() {
  if (pipe(g_signal_pipe) != 0) return false;
  for (int fd : g_signal_pipe) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGCHLD, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return true;
}

// Each extra worker runs its own reactor on its own socket of the -j group
// (Linux) or on the shared one. A worker ends with its parent, so a killed
// parent leaves no orphans.
std::vector<pid_t> fork_workers(int n, bool* is_worker) {
  std::vector<pid_t> kids;
  *is_worker = false;
  for (int i = 1; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      *is_worker = true;
#ifdef SMTPD_HAVE_PDEATHSIG
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() == 1) _exit(0);  // the parent is already gone
#endif
      return {};
    }
    if (pid < 0) {
      fprintf(stderr, "smtpd: fork: %s\n", strerror(errno));
      break;
    }
    kids.push_back(pid);
  }
  return kids;
}

// Stops the other workers and returns `status`, or 1 if one of them failed.
int stop_workers(const std::vector<pid_t>& kids, int status) {
  for (pid_t pid : kids) kill(pid, SIGTERM);
  for (pid_t pid : kids) {
    int ws = 0;
    pid_t r;
    do {
      r = waitpid(pid, &ws, 0);
    } while (r < 0 && errno == EINTR);
    if (r == pid && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0)) status = 1;
  }
  return status;
}

}  // namespace

#ifdef SMTPD_STATIC
// The default handler for an uncaught exception demangles type names: 45 KB
// of libstdc++ in the static binary. One line and abort() does as well.
namespace __gnu_cxx {
void __verbose_terminate_handler() {
  static const char msg[] = "smtpd: terminate called (uncaught exception)\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  abort();
}
}  // namespace __gnu_cxx
#endif

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  smtpd::cli::Result r = smtpd::cli::parse(args);
  if (!r.run) {
    fputs(r.out.c_str(), stdout);
    fputs(r.err.c_str(), stderr);
    return r.exit_code;
  }
  const smtpd::cli::Options& o = r.options;
  smtpd::set_debug(o.debug);
  smtpd::ServerOptions so = o.server;
  try {
    smtpd::check_class(o.classname, so);
  } catch (const std::invalid_argument& e) {
    fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  raise_fd_limit();
  keep_freed_memory();

  // With -j N the port is checked once, here, so a port in use is an error
  // as without -j, and port 0 becomes one port for all. On Linux each
  // process then binds its own SO_REUSEPORT socket to it and the kernel
  // spreads connections over them; on one shared socket whichever worker
  // wakes first takes a burst, often most of the kept sessions.
  smtpd::HostPort group = o.local;
  if (o.workers > 1) {
    try {
      so.listen_fd = smtpd::bind_listener(group, so.backlog);
#ifdef SMTPD_HAVE_REUSEPORT_LB
      group.port = smtpd::asyncore::local_port(so.listen_fd);  // port 0
      ::close(so.listen_fd);
      so.listen_fd = smtpd::bind_listener(group, so.backlog, true);
#endif
    } catch (const std::exception& e) {
      fprintf(stderr, "smtpd: %s\n", e.what());
      return 1;
    }
  }
  // SIGTERM/SIGINT wait, blocked, until this process (and each worker) has
  // its own handler and self-pipe: a worker may already be accepting while
  // the parent is still forking.
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGINT);
  sigprocmask(SIG_BLOCK, &term, &old_mask);
  if (!install_signals()) {
    fprintf(stderr, "smtpd: pipe: %s\n", strerror(errno));
    return 1;
  }
  bool is_worker;
  std::vector<pid_t> kids = fork_workers(o.workers, &is_worker);
  if (is_worker) {
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
    if (!install_signals()) return 1;
#ifdef SMTPD_HAVE_REUSEPORT_LB
    ::close(so.listen_fd);  // the parent's; this worker binds its own
    try {
      so.listen_fd = smtpd::bind_listener(group, so.backlog, true);
    } catch (const std::exception& e) {
      fprintf(stderr, "smtpd: worker: %s\n", e.what());
      return 1;
    }
#endif
  }
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);

  std::unique_ptr<socket_map> map;
  std::unique_ptr<smtpd::SMTPServer> server;
  try {
    map.reset(new socket_map());
    server = smtpd::make_server(o.classname, o.local, o.remote, so, map.get());
  } catch (const std::invalid_argument& e) {
    fprintf(stderr, "%s\n", e.what());
    return stop_workers(kids, 1);
  } catch (const std::exception& e) {
    fprintf(stderr, "smtpd: %s\n", e.what());
    return stop_workers(kids, 1);
  }

  if (o.setuid) {
    std::string why;
    if (!smtpd::privs::drop_privileges("nobody", &why)) {
      fprintf(stderr, "Cannot setuid \"nobody\"; try running with -n option.\n");
      if (smtpd::debugging()) fprintf(stderr, "smtpd: %s\n", why.c_str());
      return stop_workers(kids, 1);
    }
  }

  SignalWatcher watcher(map.get(), server.get(), 60.0);
  watcher.workers = kids;
  watcher.reap_workers();  // any that died before the watcher existed
  int status = 0;
  try {
    while (!map->stopping()) {
      map->poll_once(-1);
      if (watcher.shutting_down && server->channel_count == 0) break;
    }
  } catch (const std::exception& e) {
    fprintf(stderr, "smtpd: %s\n", e.what());
    status = 1;
  }
  if (watcher.worker_failed) status = 1;
  return stop_workers(kids, status);
}
