// async_chat: terminator-driven input and queued output. See smtpd/asynchat.h.
#include "smtpd/asynchat.h"

#include <string.h>

#include <algorithm>

namespace smtpd {
namespace asynchat {

std::string simple_producer::more() {
  if (pos_ >= data_.size()) return std::string();
  size_t n = std::min(size_, data_.size() - pos_);
  std::string out = data_.substr(pos_, n);
  pos_ += n;
  if (pos_ >= data_.size()) std::string().swap(data_);
  return out;
}

async_chat::async_chat(asyncore::socket_map* map) : dispatcher(map) {}
async_chat::async_chat(int fd, asyncore::socket_map* map)
    : dispatcher(fd, map) {}
async_chat::~async_chat() = default;

void async_chat::set_terminator(std::string_view term) {
  if (term.empty()) {
    set_terminator(nullptr);
    return;
  }
  term_kind_ = TerminatorKind::string;
  term_.assign(term.data(), term.size());
  term_count_ = 0;
}

void async_chat::set_terminator(size_t count) {
  if (count == 0) {
    set_terminator(nullptr);
    return;
  }
  term_kind_ = TerminatorKind::count;
  term_.clear();
  term_count_ = count;
}

void async_chat::set_terminator(std::nullptr_t) {
  term_kind_ = TerminatorKind::none;
  term_.clear();
  term_count_ = 0;
}

// ------------------------------------------------------------------ input

// One scratch buffer per thread: idle connections then cost no read buffer.
static char* scratch_buffer() {
  static thread_local char buf[async_chat::ac_in_buffer_size];
  return buf;
}

void async_chat::handle_read() {
  if (paused_ || eof_) return;
  char* buf = scratch_buffer();
  ssize_t n = recv(buf, ac_in_buffer_size);
  if (n <= 0) return;  // nothing yet, or closed (handle_close ran)
  if (ibuf_.empty()) {
    feed(buf, static_cast<size_t>(n));
  } else {
    ibuf_.append(buf, static_cast<size_t>(n));
    process_input();
  }
}

void async_chat::process_input() {
  if (ibuf_.empty()) return;
  std::string data;
  data.swap(ibuf_);
  feed(data.data(), data.size());
}

// Longest suffix of [p, p+len) that is a proper prefix of `term`.
static size_t partial_suffix(const char* p, size_t len, const std::string& term) {
  size_t max = std::min(len, term.size() - 1);
  for (size_t k = max; k > 0; --k)
    if (memcmp(p + len - k, term.data(), k) == 0) return k;
  return 0;
}

// Cuts [data, data+len) at terminators. Each byte is examined once, except
// a partial terminator at the very end, which is kept for the next read.
void async_chat::feed(const char* data, size_t len) {
  size_t pos = 0;
  while (pos < len && !paused_ && !close_when_done_ && fileno() >= 0) {
    const char* p = data + pos;
    size_t avail = len - pos;
    if (term_kind_ == TerminatorKind::none) {
      collect_incoming_data(p, avail);
      pos = len;
    } else if (term_kind_ == TerminatorKind::count) {
      size_t take = std::min(avail, term_count_);
      collect_incoming_data(p, take);
      pos += take;
      term_count_ -= take;
      if (term_count_ == 0) {
        term_kind_ = TerminatorKind::none;
        found_terminator();
      }
    } else {
      std::string_view hay(p, avail);
      size_t idx = hay.find(term_);
      if (idx != std::string_view::npos) {
        if (idx > 0) collect_incoming_data(p, idx);
        pos += idx + term_.size();
        found_terminator();
      } else {
        size_t keep = partial_suffix(p, avail, term_);
        if (avail > keep) collect_incoming_data(p, avail - keep);
        ibuf_.append(p + avail - keep, keep);
        return;
      }
    }
  }
  // Paused (or closing) with input left: keep it for resume_input(). After
  // close_when_done the rest is never processed, as with the original.
  if (pos < len && !close_when_done_ && fileno() >= 0)
    ibuf_.append(data + pos, len - pos);
}

void async_chat::pause_input() {
  paused_ = true;
  mark_dirty();
}

void async_chat::resume_input() {
  paused_ = false;
  mark_dirty();
}

// ------------------------------------------------------------------ output

void async_chat::push(std::string_view data) {
  if (close_when_done_ || data.empty()) return;
  if (producers_.empty()) {
    if (opos_ == obuf_.size()) {
      obuf_.clear();
      opos_ = 0;
    }
    obuf_.append(data.data(), data.size());
  } else {
    producers_.push_back(std::unique_ptr<producer>(
        new simple_producer(std::string(data), 65536)));
  }
  mark_dirty();
}

void async_chat::push_with_producer(std::unique_ptr<producer> p) {
  if (close_when_done_ || !p) return;
  producers_.push_back(std::move(p));
  mark_dirty();
}

void async_chat::close_when_done() {
  close_when_done_ = true;
  mark_dirty();
}

void async_chat::discard_buffers() {
  std::string().swap(ibuf_);
  std::string().swap(obuf_);
  opos_ = 0;
  producers_.clear();
}

bool async_chat::refill_output() {
  while (!producers_.empty()) {
    std::string s = producers_.front()->more();
    if (!s.empty()) {
      obuf_ = std::move(s);
      opos_ = 0;
      return true;
    }
    producers_.erase(producers_.begin());
  }
  return false;
}

void async_chat::initiate_send() {
  while (fileno() >= 0) {
    if (opos_ == obuf_.size()) {
      obuf_.clear();
      opos_ = 0;
      if (!refill_output()) break;
    }
    sending_ = true;
    ssize_t n = send(obuf_.data() + opos_, obuf_.size() - opos_);
    sending_ = false;
    if (n <= 0) break;
    opos_ += static_cast<size_t>(n);
  }
  if (fileno() < 0) return;
  bool drained = opos_ == obuf_.size() && producers_.empty();
  if (drained && eof_ && !paused_ && !close_when_done_ && !ibuf_.empty()) {
    // The peer is gone but input it sent before leaving is unprocessed.
    process_input();
    if (!paused_) ibuf_.clear();  // a partial terminator never completes
    drained = opos_ == obuf_.size() && producers_.empty();
    if (!drained || paused_) return;  // next pass sends, or resume closes
  }
  if (drained) {
    if (obuf_.capacity() > 4096) std::string().swap(obuf_);
    if (close_when_done_ || (eof_ && !paused_)) close();
  } else if (opos_ > 65536 && opos_ * 2 > obuf_.size()) {
    obuf_.erase(0, opos_);
    opos_ = 0;
  }
}

bool async_chat::readable() {
  return !paused_ && !eof_ && !close_when_done_ &&
         output_pending() < ac_out_limit;
}

bool async_chat::writable() {
  return output_pending() > 0 || !producers_.empty();
}

void async_chat::handle_write() { initiate_send(); }

// End of file from the peer: finish sending what is queued (a client may
// half-close after QUIT), then close. A send failure, or a second report,
// closes at once.
void async_chat::handle_close() {
  if (sending_) {
    close();
    return;
  }
  if (paused_ && !ibuf_.empty() && !eof_) {
    // Hung up while input waits on a pause: keep it for resume_input().
    // Level-triggered pollers would report the hang-up on every pass.
    eof_ = true;
    stop_watching();
    return;
  }
  if (eof_ || (output_pending() == 0 && producers_.empty())) {
    close();
    return;
  }
  eof_ = true;
  mark_dirty();
}

void async_chat::handle_deferred() {
  if (!paused_ && !ibuf_.empty()) process_input();
  if (fileno() >= 0) initiate_send();
}

}  // namespace asynchat
}  // namespace smtpd
