// SMTPServer (the listener) and DebuggingServer (prints each message).
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

#include "netaddr.h"
#include "pytext.h"
#include "smtpd/proxy.h"
#include "smtpd/smtpd.h"

namespace smtpd {

// ------------------------------------------------------------------ debug

static bool g_debug = false;

void set_debug(bool on) { g_debug = on; }
bool debugging() { return g_debug; }

void debug(std::string_view line) {
  if (!g_debug) return;
  std::string out(line);
  out += '\n';
  // stderr is unbuffered: one write per line keeps lines whole.
  fwrite(out.data(), 1, out.size(), stderr);
}

// ------------------------------------------------------------------ SMTPServer

static std::string where_of(const HostPort& a) {
  if (a.host.find(':') != std::string::npos)
    return "[" + a.host + "]:" + std::to_string(a.port);
  return a.host + ":" + std::to_string(a.port);
}

int bind_listener(const HostPort& localaddr, int backlog, bool reuse_port) {
  std::string where = where_of(localaddr);
  std::string err;
  std::vector<netaddr::Address> addrs =
      netaddr::resolve(localaddr.host, localaddr.port, true, &err);
  if (addrs.empty())
    throw std::runtime_error("cannot listen on " + where + ": " + err);
  const netaddr::Address& a = addrs.front();
  int fd = ::socket(a.family(), SOCK_STREAM, 0);
  int one = 1;
#ifdef SO_REUSEPORT
  if (fd >= 0 && reuse_port &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    ::close(fd);
    fd = -1;
  }
#else
  (void)reuse_port;
#endif
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd, a.sa(), a.len) != 0 ||
      ::listen(fd, backlog > 0 ? backlog : 4096) != 0) {
    int e = errno;
    if (fd >= 0) ::close(fd);
    throw std::system_error(e, std::generic_category(), "cannot listen on " + where);
  }
  return fd;
}

SMTPServer::SMTPServer(const HostPort& localaddr, const HostPort& remoteaddr,
                       const ServerOptions& options, asyncore::socket_map* map)
    : dispatcher(map),
      data_size_limit(options.data_size_limit),
      enable_SMTPUTF8(options.enable_SMTPUTF8),
      localaddr_(localaddr),
      remoteaddr_(remoteaddr),
      options_(options),
      fqdn_(netaddr::getfqdn()) {
  int fd = options.listen_fd >= 0 ? options.listen_fd
                                  : bind_listener(localaddr, options.backlog);
  set_socket(fd);
  listen(options.backlog > 0 ? options.backlog : 4096);  // marks it accepting
}

SMTPServer::~SMTPServer() {
  // Channels may outlive us in the map: cut them loose first.
  while (SMTPChannel* ch = channels_) {
    unlink(ch);
    ch->orphaned_ = true;
    ch->close();
  }
}

void SMTPServer::link(SMTPChannel* ch) {
  ch->prev_ = nullptr;
  ch->next_ = channels_;
  if (channels_) channels_->prev_ = ch;
  channels_ = ch;
  ++channel_count;
}

void SMTPServer::unlink(SMTPChannel* ch) {
  if (ch->prev_) ch->prev_->next_ = ch->next_;
  else if (channels_ == ch) channels_ = ch->next_;
  else return;  // not linked
  if (ch->next_) ch->next_->prev_ = ch->prev_;
  ch->prev_ = ch->next_ = nullptr;
  --channel_count;
}

int SMTPServer::bound_port() const { return asyncore::local_port(fileno()); }

bool SMTPServer::readable() {
  return !accept_paused_;
}

// Out of descriptors: say so once, stop accepting for a second, retry.
// The pending connections wait in the kernel's backlog meanwhile.
void SMTPServer::handle_timeout() { accept_paused_ = false; }

void SMTPServer::handle_accept() {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage addr;
    socklen_t len;
    int fd = accept(&addr, &len);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        if (!emfile_logged_)
          fprintf(stderr, "smtpd: accept: %s; pausing new connections\n",
                  strerror(errno));
        emfile_logged_ = true;
        accept_paused_ = true;
        set_timeout(1.0);
      }
      return;
    }
    emfile_logged_ = false;
    if ((options_.max_connections && channel_count >= options_.max_connections) ||
        !map().can_watch(fd)) {
      std::string msg = "421 " + fqdn_ + " Error: too many connections\r\n";
      ssize_t ignored = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
      (void)ignored;
      ::close(fd);
      continue;
    }
    handle_accepted(fd, addr, len);
  }
}

void SMTPServer::handle_accepted(int fd, const sockaddr_storage& addr,
                                 socklen_t len) {
  if (debugging())
    debug("Incoming connection from " +
          asyncore::format_address(reinterpret_cast<const sockaddr*>(&addr), len));
  make_channel(fd, addr, len);
}

void SMTPServer::make_channel(int fd, const sockaddr_storage& addr,
                              socklen_t len) {
  map().adopt(std::unique_ptr<SMTPChannel>(
      new SMTPChannel(*this, fd, addr, len, &map())));
}

void SMTPServer::shutdown_gracefully() {
  close();
  for (SMTPChannel* ch = channels_; ch;) {
    SMTPChannel* next = ch->next_;
    ch->shutdown_gracefully();
    ch = next;
  }
}

std::optional<std::string> SMTPServer::process_message(
    const Peer&, const std::string&, const std::vector<std::string>&,
    const std::string&, const std::vector<std::string>&,
    const std::vector<std::string>&) {
  // The reference raises NotImplementedError and drops the client. Saying
  // so keeps the message with the client instead of losing it.
  return std::string("554 Error: SMTPServer does not process messages; "
                     "choose another class");
}

Verdict SMTPServer::on_mail(SMTPChannel&, const std::string&) {
  return Verdict::ok();
}
Verdict SMTPServer::on_rcpt(SMTPChannel&, const std::string&) {
  return Verdict::ok();
}
Verdict SMTPServer::on_data(SMTPChannel&) { return Verdict::ok(); }

Verdict SMTPServer::on_message(SMTPChannel& ch) {
  std::optional<std::string> status =
      process_message(ch.peer, *ch.mailfrom, ch.rcpttos, ch.received_data,
                      ch.mail_options, ch.rcpt_options);
  return status ? Verdict::say(*status) : Verdict::ok();
}

void SMTPServer::on_reset(SMTPChannel&) {}
void SMTPServer::on_channel_closed(SMTPChannel&) {}

// ------------------------------------------------------------------ DebuggingServer

DebuggingServer::DebuggingServer(const HostPort& localaddr,
                                 const HostPort& remoteaddr,
                                 const ServerOptions& options,
                                 asyncore::socket_map* map, int out_fd)
    : SMTPServer(localaddr, remoteaddr, options, map), out_fd_(out_fd) {}

std::string DebuggingServer::format_message(
    const Peer& peer, const std::string& data,
    const std::vector<std::string>& mail_options,
    const std::vector<std::string>& rcpt_options) {
  std::string out;
  out.reserve(data.size() + data.size() / 8 + 128);
  out += "---------- MESSAGE FOLLOWS ----------\n";
  if (!mail_options.empty())
    out += "mail options: " + pytext::list_repr(mail_options) + "\n";
  if (!rcpt_options.empty())
    out += "rcpt options: " + pytext::list_repr(rcpt_options) + "\n\n";
  // bytes.splitlines(): lines end at LF, CR or CRLF. Most lines hold only
  // bytes that repr() shows as they are, up to the LF: one scan finds both.
  bool in_headers = true;
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end) {
    const char* eol = p + pytext::plain_prefix(p, static_cast<size_t>(end - p));
    bool plain = eol == end || *eol == '\n';
    if (!plain) {  // a CR, a quote or a byte to escape: find the line's end
      const char* lf = static_cast<const char*>(memchr(eol, '\n', end - eol));
      const char* cr = static_cast<const char*>(
          memchr(eol, '\r', (lf ? lf : end) - eol));
      eol = cr ? cr : lf ? lf : end;
    }
    const char* next = eol < end ? eol + 1 : end;
    if (eol < end && *eol == '\r' && next < end && *next == '\n') ++next;
    std::string_view line(p, static_cast<size_t>(eol - p));
    if (in_headers && line.empty()) {
      pytext::append_bytes_repr(out, "X-Peer: " + peer.host);
      out += '\n';
      in_headers = false;
    }
    if (plain) {
      out.append("b'", 2).append(line.data(), line.size()).append("'\n", 2);
    } else {
      pytext::append_bytes_repr(out, line);
      out += '\n';
    }
    p = next;
  }
  out += "------------ END MESSAGE ------------\n";
  return out;
}

// Writes all of `s` even to a non-blocking or slow descriptor. Returns 0,
// or the errno that stopped it.
static int write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
    } else {
      return n < 0 ? errno : EIO;
    }
  }
  return 0;
}

// Printing is this class's delivery: when the output is gone (a closed
// pipe, a full disk) the client is told to try later, not given a 250.
std::optional<std::string> DebuggingServer::process_message(
    const Peer& peer, const std::string&, const std::vector<std::string>&,
    const std::string& data, const std::vector<std::string>& mail_options,
    const std::vector<std::string>& rcpt_options) {
  int err = write_all(out_fd_, format_message(peer, data, mail_options, rcpt_options));
  if (err == 0) {
    output_failed_ = false;
    return std::nullopt;
  }
  if (!output_failed_)
    fprintf(stderr, "smtpd: cannot print the message: %s\n", strerror(err));
  output_failed_ = true;
  return std::string("451 Error: cannot print the message; try again later");
}

// ------------------------------------------------------------------ classes

const std::vector<std::string>& class_names() {
  static const std::vector<std::string> names = {
      "SMTPServer", "DebuggingServer", "PureProxy", "MailmanProxy"};
  return names;
}

void check_class(const std::string& classname, const ServerOptions& options) {
  std::string name = classname;
  if (name.compare(0, 6, "smtpd.") == 0) name = name.substr(6);
  if (std::find(class_names().begin(), class_names().end(), name) ==
      class_names().end())
    throw std::invalid_argument(
        "smtpd: unknown class \"" + classname + "\"; choose one of "
        "SMTPServer, DebuggingServer, PureProxy, MailmanProxy");
  if ((name == "PureProxy" || name == "MailmanProxy") && options.enable_SMTPUTF8)
    throw std::invalid_argument(name + " does not support SMTPUTF8.");
}

static std::unique_ptr<SMTPServer> construct(const std::string& name,
                                             const HostPort& localaddr,
                                             const HostPort& remoteaddr,
                                             const ServerOptions& options,
                                             asyncore::socket_map* map) {
  if (name == "SMTPServer")
    return std::unique_ptr<SMTPServer>(
        new SMTPServer(localaddr, remoteaddr, options, map));
  if (name == "DebuggingServer")
    return std::unique_ptr<SMTPServer>(
        new DebuggingServer(localaddr, remoteaddr, options, map));
  if (name == "PureProxy")
    return std::unique_ptr<SMTPServer>(
        new PureProxy(localaddr, remoteaddr, options, map));
  if (name == "MailmanProxy")
    return std::unique_ptr<SMTPServer>(
        new MailmanProxy(localaddr, remoteaddr, options, map));
  return nullptr;
}

std::unique_ptr<SMTPServer> make_server(const std::string& classname,
                                        const HostPort& localaddr,
                                        const HostPort& remoteaddr,
                                        const ServerOptions& options,
                                        asyncore::socket_map* map) {
  check_class(classname, options);
  std::string name = classname;
  if (name.compare(0, 6, "smtpd.") == 0) name = name.substr(6);
  std::unique_ptr<SMTPServer> server =
      construct(name, localaddr, remoteaddr, options, map);
  if (server && debugging()) {
    HostPort bound{localaddr.host, server->bound_port()};
    debug(name + " started at " + where_of(bound) + "; remote " +
          where_of(remoteaddr));
  }
  return server;
}

}  // namespace smtpd
