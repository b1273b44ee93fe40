// Public header. The SMTP side, shaped like Python's smtpd module:
// SMTPChannel (one RFC 5321 session), SMTPServer (the listener that hands
// each message to process_message) and DebuggingServer (prints messages).
// PureProxy and MailmanProxy are in smtpd/proxy.h.
//
// The one addition to the Python design is that the envelope hooks of
// SMTPServer may answer later (Verdict::later()): the channel then stops
// reading until SMTPChannel::complete() delivers the reply. The relay uses
// this to pass each MAIL and RCPT upstream before the client is answered.
#ifndef SMTPD_SMTPD_H
#define SMTPD_SMTPD_H

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtpd/asynchat.h"
#include "smtpd/asyncore.h"

namespace smtpd {

/// The reference's version string, also used in the greeting.
extern const char* const __version__;
/// RFC 1870 SIZE default, as documented by the reference.
constexpr size_t DATA_SIZE_DEFAULT = 33554432;

/// A host and port as given on the command line ("localhost", 8025).
struct HostPort {
  std::string host;
  int port = 0;
};

/// The client's address as process_message sees it (Python's peer tuple).
struct Peer {
  std::string host;
  int port = 0;
};

/// Settings shared by a server and its channels. Zero disables a limit.
struct ServerOptions {
  size_t data_size_limit = DATA_SIZE_DEFAULT;
  bool enable_SMTPUTF8 = false;
  double timeout = 300;          // command phase, RFC 5321 4.5.3.2.7
  double data_timeout = 600;     // between reads while in DATA
  size_t max_connections = 0;    // 0: no cap
  size_t max_recipients = 1000;  // RFC 5321 4.5.3.1.8 asks for >= 100
  size_t max_buffered = size_t(256) << 20;  // message bytes held, all sessions
  int backlog = 4096;            // listen(2) backlog; the kernel may cap it
  int listen_fd = -1;            // serve this bound, listening socket

  // PureProxy and MailmanProxy (smtpd/proxy.h).
  double relay_connect_timeout = 30;  // upstream TCP connect
  double relay_timeout = 120;         // each upstream reply
  std::string mailman_lists = "/var/lib/mailman/lists";
  std::string mailman_wrapper = "/usr/lib/mailman/mail/mailman";
  double mailman_timeout = 120;       // the wrapper process
};

/// What an envelope hook answers: a reply now, or later via complete().
/// An empty reply means "accepted, with the reference's usual text".
struct Verdict {
  bool pending = false;
  std::optional<std::string> reply;

  static Verdict ok() { return {}; }
  static Verdict later() { return {true, std::nullopt}; }
  static Verdict say(std::string r) { return {false, std::move(r)}; }
};

class SMTPServer;

/// Writes `line` to the debug stream (stderr with -d, else nowhere).
void debug(std::string_view line);
void set_debug(bool on);
bool debugging();

class SMTPChannel : public asynchat::async_chat {
 public:
  enum State { COMMAND = 0, DATA = 1 };
  static constexpr size_t command_size_limit = 512;

  SMTPChannel(SMTPServer& server, int fd, const sockaddr_storage& addr,
              socklen_t addrlen, asyncore::socket_map* map = nullptr);
  ~SMTPChannel() override;

  /// Queues `msg` + CRLF (hides async_chat::push, as the original does).
  void push(std::string_view msg);

  void collect_incoming_data(const char* data, size_t len) override;
  void found_terminator() override;
  void handle_read() override;
  void handle_close() override;
  void handle_timeout() override;
  std::string describe() const override;

  // One method per command; `arg` is null when the line had no space.
  void smtp_HELO(const std::string* arg);
  void smtp_EHLO(const std::string* arg);
  void smtp_NOOP(const std::string* arg);
  void smtp_QUIT(const std::string* arg);
  void smtp_HELP(const std::string* arg);
  void smtp_VRFY(const std::string* arg);
  void smtp_MAIL(const std::string* arg);
  void smtp_RCPT(const std::string* arg);
  void smtp_RSET(const std::string* arg);
  void smtp_DATA(const std::string* arg);
  void smtp_EXPN(const std::string* arg);

  /// Delivers the answer to a hook that returned Verdict::later(). A reply
  /// starting with 2 or 3 (or none) accepts; anything else refuses. Input
  /// processing resumes in the next pass.
  void complete(std::optional<std::string> reply);
  /// MAIL's parameters (upper-cased) while on_mail() decides; they become
  /// mail_options once it accepts.
  const std::vector<std::string>& pending_mail_options() const {
    return pending_options_;
  }
  /// True while a hook's answer is awaited.
  bool awaiting() const { return pending_ != Pending::none; }
  /// True between MAIL and the end of the message (or RSET).
  bool in_transaction() const { return mailfrom.has_value() || awaiting(); }
  /// Graceful shutdown: an idle session gets 421 and closes now, a busy
  /// one after its current transaction.
  void shutdown_gracefully();

  /// The longest command line any command may have now.
  size_t max_command_size_limit() const;
  /// The limit for one command ("MAIL" grows with SIZE and SMTPUTF8).
  size_t command_limit(std::string_view command) const;

  // Session state, by the reference's names.
  SMTPServer& smtp_server;
  Peer peer;
  std::string fqdn;
  State smtp_state = COMMAND;
  std::string seen_greeting;
  bool extended_smtp = false;
  std::optional<std::string> mailfrom;
  std::vector<std::string> rcpttos;
  bool require_SMTPUTF8 = false;
  size_t num_bytes = 0;
  std::string received_data;  // the message, lines joined by LF
  std::vector<std::string> mail_options;
  std::vector<std::string> rcpt_options;
  size_t data_size_limit;
  bool enable_SMTPUTF8;

 private:
  enum class Pending { none, mail, rcpt, data, message };

  bool greet(const std::string* arg, const char* verb);
  void set_post_data_state();
  void set_rset_state();
  void arm_timeout();
  void process_command_line();
  void process_data_line();
  void finish_message();
  void apply_verdict(Pending stage, const Verdict& v);
  void accept_stage(Pending stage, const std::optional<std::string>& reply);

  friend class SMTPServer;
  SMTPChannel* prev_ = nullptr;  // the server's list of open channels
  SMTPChannel* next_ = nullptr;
  bool orphaned_ = false;        // the server went away first
  bool quit_after_transaction_ = false;
  bool timed_out_ = false;       // the 421 for a timeout was queued
  bool storage_full_ = false;    // the server's buffer budget ran out
  size_t charged_ = 0;           // bytes of received_data in the budget
  bool charge(size_t n);
  void drop_data();

  size_t cur_line_bytes_ = 0;   // raw bytes of the DATA line so far
  size_t data_lines_ = 0;       // DATA lines stored so far
  bool line_dot_ = false;       // the DATA line began with a (removed) dot
  bool sep_written_ = false;    // its LF separator is already stored
  std::string line_;          // the command line being collected
  bool data_overflow_ = false;
  size_t mail_limit_extra_ = 0;  // bytes EHLO added to MAIL's limit
  Pending pending_ = Pending::none;
  std::string pending_address_;
  std::vector<std::string> pending_options_;
  bool pending_utf8_ = false;
};

class SMTPServer : public asyncore::dispatcher {
 public:
  /// Resolves and binds `localaddr`, then listens. Throws
  /// std::system_error (with the address in what()) when it cannot.
  SMTPServer(const HostPort& localaddr, const HostPort& remoteaddr,
             const ServerOptions& options = ServerOptions(),
             asyncore::socket_map* map = nullptr);
  ~SMTPServer() override;

  /// Override to do something with each message. Return nothing for
  /// "250 OK", or the full reply line to send instead.
  virtual std::optional<std::string> process_message(
      const Peer& peer, const std::string& mailfrom,
      const std::vector<std::string>& rcpttos, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options);

  // Envelope hooks. The defaults answer at once, as the reference does.
  virtual Verdict on_mail(SMTPChannel& ch, const std::string& address);
  virtual Verdict on_rcpt(SMTPChannel& ch, const std::string& address);
  virtual Verdict on_data(SMTPChannel& ch);
  /// The whole message arrived; the default calls process_message().
  virtual Verdict on_message(SMTPChannel& ch);
  /// The transaction was abandoned (RSET, HELO/EHLO, size overflow).
  virtual void on_reset(SMTPChannel& ch);
  /// The channel is closing; it must not be used after this returns.
  virtual void on_channel_closed(SMTPChannel& ch);

  /// Makes the channel for an accepted connection (channel_class).
  virtual void make_channel(int fd, const sockaddr_storage& addr,
                            socklen_t len);

  /// Stops accepting and asks every channel to finish (SIGTERM).
  void shutdown_gracefully();
  void handle_accept() override;
  void handle_timeout() override;
  void handle_accepted(int fd, const sockaddr_storage& addr,
                       socklen_t len) override;
  bool writable() override { return false; }
  bool readable() override;

  const HostPort& localaddr() const { return localaddr_; }
  const HostPort& remoteaddr() const { return remoteaddr_; }
  /// The port actually bound (useful with port 0).
  int bound_port() const;
  const ServerOptions& options() const { return options_; }
  /// The name greeted with and answered to HELO/EHLO.
  const std::string& fqdn() const { return fqdn_; }

  size_t data_size_limit;
  bool enable_SMTPUTF8;
  /// Channels currently open on this server.
  size_t channel_count = 0;
  /// Message bytes all channels hold now (see ServerOptions::max_buffered).
  size_t buffered_bytes = 0;

 protected:
  HostPort localaddr_;
  HostPort remoteaddr_;
  ServerOptions options_;
  std::string fqdn_;
  bool accept_paused_ = false;  // out of descriptors; a 1 s timer resumes
  bool emfile_logged_ = false;

 private:
  friend class SMTPChannel;
  void link(SMTPChannel* ch);
  void unlink(SMTPChannel* ch);
  SMTPChannel* channels_ = nullptr;
};

/// Prints every message to a descriptor (stdout by default) the way
/// Python's DebuggingServer does, byte for byte, and flushes per message.
class DebuggingServer : public SMTPServer {
 public:
  DebuggingServer(const HostPort& localaddr, const HostPort& remoteaddr,
                  const ServerOptions& options = ServerOptions(),
                  asyncore::socket_map* map = nullptr, int out_fd = 1);

  std::optional<std::string> process_message(
      const Peer& peer, const std::string& mailfrom,
      const std::vector<std::string>& rcpttos, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options) override;

  /// The text process_message() writes, for tests and reuse.
  static std::string format_message(
      const Peer& peer, const std::string& data,
      const std::vector<std::string>& mail_options,
      const std::vector<std::string>& rcpt_options);

 private:
  int out_fd_;
  bool output_failed_ = false;  // said once on stderr until it works again
};

/// The server class names -c accepts, in the order -h lists them.
const std::vector<std::string>& class_names();

/// Binds and listens on `localaddr`; returns the socket. With `reuse_port`
/// (SO_REUSEPORT) other sockets of this user may bind the port too, and
/// Linux spreads new connections over them. Throws std::runtime_error or
/// std::system_error naming the address.
int bind_listener(const HostPort& localaddr, int backlog,
                  bool reuse_port = false);

/// Throws std::invalid_argument with the one-line message to print when
/// `classname` is unknown or refuses `options` (SMTPUTF8 for the proxies).
void check_class(const std::string& classname, const ServerOptions& options);

/// Makes the server named `classname` ("DebuggingServer" or
/// "smtpd.DebuggingServer", ...). Returns null for an unknown name; throws
/// std::invalid_argument when the class refuses the options (SMTPUTF8) and
/// std::system_error when it cannot listen.
std::unique_ptr<SMTPServer> make_server(const std::string& classname,
                                        const HostPort& localaddr,
                                        const HostPort& remoteaddr,
                                        const ServerOptions& options,
                                        asyncore::socket_map* map = nullptr);

}  // namespace smtpd

#endif
