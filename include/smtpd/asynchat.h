// Public header. async_chat, shaped like Python's asynchat: input is cut at
// a terminator (a byte string, a byte count, or none) and handed to
// collect_incoming_data()/found_terminator(); output is a queue of bytes and
// producers, sent as the socket allows, with close_when_done().
//
// Every buffer is bounded: input is read into one scratch buffer shared by
// the map and only a partial terminator (or, while paused, the unread rest
// of one read) is kept per connection; output past ac_out_limit stops
// reading until the peer drains it.
#ifndef SMTPD_ASYNCHAT_H
#define SMTPD_ASYNCHAT_H

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "smtpd/asyncore.h"

namespace smtpd {
namespace asynchat {

/// Yields output in pieces; an empty string means it is exhausted.
class producer {
 public:
  virtual ~producer() = default;
  virtual std::string more() = 0;
};

/// Hands out a fixed string `buffer_size` bytes at a time.
class simple_producer : public producer {
 public:
  explicit simple_producer(std::string data, size_t buffer_size = 512)
      : data_(std::move(data)), size_(buffer_size ? buffer_size : 1) {}
  std::string more() override;

 private:
  std::string data_;
  size_t pos_ = 0;
  size_t size_;
};

class async_chat : public asyncore::dispatcher {
 public:
  enum class TerminatorKind { none, string, count };

  explicit async_chat(asyncore::socket_map* map = nullptr);
  async_chat(int fd, asyncore::socket_map* map = nullptr);
  ~async_chat() override;

  /// Subclasses receive input here, in pieces, up to the terminator.
  virtual void collect_incoming_data(const char* data, size_t len) = 0;
  /// The terminator was seen (it is not passed to collect_incoming_data).
  virtual void found_terminator() = 0;

  void set_terminator(std::string_view term);  // empty means none
  void set_terminator(size_t count);           // 0 means none
  void set_terminator(std::nullptr_t);
  TerminatorKind terminator_kind() const { return term_kind_; }
  const std::string& terminator() const { return term_; }
  size_t terminator_count() const { return term_count_; }

  void push(std::string_view data);
  void push_with_producer(std::unique_ptr<producer> p);
  /// Closes once everything queued so far has been sent.
  void close_when_done();
  /// Drops queued output and buffered input.
  void discard_buffers();
  /// Bytes queued and not yet sent (pending producers not counted).
  size_t output_pending() const { return obuf_.size() - opos_; }

  /// While paused, no input is read or processed; bytes already read wait
  /// in the buffer. resume_input() processes them in the next pass.
  void pause_input();
  void resume_input();
  bool input_paused() const { return paused_; }

  bool readable() override;
  bool writable() override;
  void handle_read() override;
  void handle_write() override;
  void handle_close() override;
  void handle_deferred() override;

  /// Largest single read; the scratch buffer is this size.
  static constexpr size_t ac_in_buffer_size = 65536;
  /// Output above this stops reading until the peer catches up.
  size_t ac_out_limit = 256 * 1024;

 protected:
  /// Sends what the socket takes now. Called after each handler pass.
  void initiate_send();
  /// Runs the terminator search over buffered input.
  void process_input();

 private:
  void feed(const char* data, size_t len);
  bool refill_output();

  TerminatorKind term_kind_ = TerminatorKind::none;
  std::string term_;
  size_t term_count_ = 0;

  std::string ibuf_;          // input kept across reads (see header comment)
  std::string obuf_;          // bytes ready to send, from opos_
  size_t opos_ = 0;
  std::vector<std::unique_ptr<producer>> producers_;  // after obuf_
  bool close_when_done_ = false;
  bool paused_ = false;
  bool eof_ = false;          // peer finished sending; close once flushed
  bool sending_ = false;      // inside send(): a close then is final
};

}  // namespace asynchat
}  // namespace smtpd

#endif
