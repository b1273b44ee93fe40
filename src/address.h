// Internal header. Reads the <path> of MAIL FROM / RCPT TO the way the
// reference's RFC 5322 parser does, but reports malformed input instead of
// raising (the reference drops the connection there).
#ifndef SMTPD_ADDRESS_H
#define SMTPD_ADDRESS_H

#include <string>
#include <string_view>

namespace smtpd {

struct ParsedPath {
  bool error = false;    // malformed: the caller answers 501
  std::string address;   // addr-spec as text ("<>" for the null path)
  std::string rest;      // what follows, the mail parameters
};

/// The reference's _getaddr(): an angle-addr when `arg` starts with '<'
/// (after white space), else a bare addr-spec. Empty `arg` gives an empty
/// address and no error.
ParsedPath parse_path(std::string_view arg);

}  // namespace smtpd

#endif
