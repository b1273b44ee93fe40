// Internal header. The relay's two halves: RelayClient, an SMTP client on
// the reactor (one upstream connection), and Transaction, which ties one
// client session's envelope to it step by step for PureProxy and
// MailmanProxy (src/proxy.cc, src/mailman.cc).
#ifndef SMTPD_RELAY_CLIENT_H
#define SMTPD_RELAY_CLIENT_H

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "netaddr.h"
#include "smtpd/asynchat.h"
#include "smtpd/smtpd.h"

namespace smtpd {
namespace relay {

/// An upstream reply (its last line), or a local failure when code is 0.
struct Reply {
  enum class Failure { none, connect, timeout, lost, protocol };
  int code = 0;
  std::string text;  // after "NNN "; for a failure, what went wrong
  Failure failure = Failure::none;
};

/// One SMTP client connection. It owns itself once adopted by the map;
/// its listener hears every reply and, with a code-0 Reply, that it has
/// closed. Nothing is ever reported from inside start(), command() or
/// send_message(): only from the client's own handlers.
class RelayClient : public asynchat::async_chat {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    /// The reply to the last request (for start(): the greeting and
    /// EHLO/HELO outcome, 2xx when ready), or code 0: the connection is
    /// gone and the client has forgotten this listener.
    virtual void relay_reply(const Reply& r) = 0;
  };

  RelayClient(asyncore::socket_map* map, Listener* listener,
              const ServerOptions& options, std::string helo_name);
  ~RelayClient() override;

  /// Creates the socket and starts a non-blocking connect. Throws
  /// std::system_error when the connect fails at once.
  void start(const netaddr::Address& addr);
  /// Sends one command line (CRLF is added) and awaits its reply.
  void command(const std::string& line);
  /// Sends a message already in wire form (CRLF, dot-stuffed, ending in
  /// CRLF "." CRLF) after a 354, and awaits the final reply.
  void send_message(std::string wire);
  /// Forgets the listener and ends the session: QUIT when the protocol
  /// allows it, else (inside DATA) just closes, so that no partial
  /// message is ever taken for a whole one.
  void finish();

  bool ready() const { return state_ == State::idle; }
  /// The upstream advertised SIZE, 8BITMIME in its EHLO reply.
  bool size_offered() const { return size_offered_; }
  bool eightbit_offered() const { return eightbit_offered_; }

  void collect_incoming_data(const char* data, size_t len) override;
  void found_terminator() override;
  bool readable() override;
  void handle_connect() override;
  void handle_write() override;
  void handle_close() override;
  void handle_timeout() override;
  void handle_error(const std::exception& e) override;
  std::string describe() const override { return "upstream " + where_; }

 private:
  enum class State {
    connecting, greeting, ehlo, helo, idle, waiting, quitting, dead
  };

  void send_line(const std::string& line);
  void on_reply(int code, const std::string& text);
  void on_greeting_reply(int code, const std::string& text);
  void report(const Reply& r);
  void fail(Reply::Failure kind, const std::string& why);
  void wait_reply();

  Listener* listener_;
  double connect_timeout_;
  double reply_timeout_;
  std::string helo_name_;
  std::string where_;
  State state_ = State::connecting;
  std::string last_verb_;       // the command awaiting its reply
  bool in_body_ = false;        // DATA got 354; the message is not sent yet
  bool quit_after_reply_ = false;
  bool size_offered_ = false;
  bool eightbit_offered_ = false;
  std::string line_;            // the reply line being read
  bool line_overflow_ = false;
  std::vector<std::string> lines_;  // texts of this reply's lines
};

/// One client session's relay state: the upstream session opened at MAIL
/// (or, for MailmanProxy, at the first relayed recipient) and ended after
/// the message, on RSET or when the client goes away. Owned by the server,
/// one per channel; it answers the channel's hooks, now or later.
class Transaction : public RelayClient::Listener {
 public:
  /// Receives a step's outcome: nullopt when the upstream accepted, else
  /// the single line to send the client.
  using Done = std::function<void(std::optional<std::string>)>;

  Transaction(SMTPServer& server, SMTPChannel& ch);
  ~Transaction() override;

  /// Runs `start` for the current hook. A step that finishes inside it
  /// becomes the hook's immediate verdict, otherwise the channel waits
  /// for complete().
  Verdict answer(const std::function<void(Done)>& start);

  // Upstream steps; each ends with exactly one call of `done`.
  /// Connects and passes MAIL FROM:<mailfrom> on, with the client's SIZE=
  /// and BODY= where the upstream offers SIZE and 8BITMIME.
  void open(Done done);
  void rcpt(const std::string& address, Done done);
  void data(Done done);
  void message(std::string wire, Done done);
  /// Ends the upstream session, if any (QUIT, or a drop inside DATA).
  void end();
  /// end(), and forgets the transaction: recipients, lists, refusals.
  void reset();

  /// No upstream session, and none was lost in this transaction.
  bool fresh() const { return state_ == State::idle; }
  /// MAIL was accepted and the upstream is still there.
  bool open_upstream() const { return state_ == State::open; }
  /// DATA got its 354: message() may follow.
  bool in_body() const { return state_ == State::body; }
  /// Recipients the upstream accepted in this transaction.
  size_t relayed = 0;

  void relay_reply(const Reply& r) override;

  SMTPChannel& channel;
  std::string mailfrom;  // the envelope sender, as the channel parsed it
  std::string size;      // the client's SIZE= value, if any
  std::string body;      // the client's BODY= value, if any
  // MailmanProxy's share of the transaction (src/mailman.cc).
  struct ListTarget {
    std::string list;
    std::string command;
  };
  std::vector<ListTarget> lists;
  std::optional<std::string> mail_refusal;  // upstream MAIL's refusal
  std::function<void()> cancel_lists;       // stops reporting list results

 private:
  enum class State { idle, opening, mail, open, rcpt, data, body, message,
                     broken };

  void deliver(std::optional<std::string> reply);
  void try_connect();
  void step(std::optional<std::string> reply);
  std::string failure_reply(const Reply& r) const;
  std::string refusal_reply(const Reply& r) const;
  /// A refused RCPT or DATA: passed on, and the session stays open; or,
  /// when `broken` (no reply, or one out of turn), the upstream session
  /// is ended and later steps fail.
  void refuse_or_break(const Reply& r, bool broken);
  std::string where() const;

  SMTPServer& server_;
  RelayClient* client_ = nullptr;
  State state_ = State::idle;
  Done done_;
  std::vector<netaddr::Address> addrs_;
  size_t next_addr_ = 0;
  std::string connect_error_;
  bool in_hook_ = false;
  bool hook_done_ = false;
  std::optional<std::string> hook_reply_;
};

/// The reply for a transaction the upstream can no longer carry.
extern const char kRelayLost[];

/// False for a path the upstream could misread: a CR or LF (from a
/// bare-LF command line) or another control byte.
bool safe_path(const std::string& address);

}  // namespace relay
}  // namespace smtpd

#endif
