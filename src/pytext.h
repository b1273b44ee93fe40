// Internal header. Python's text rules that the reference's output and
// parsing depend on: bytes/str repr, str.strip()/split() whitespace,
// upper(), isalnum(), and strict UTF-8 validation.
#ifndef SMTPD_PYTEXT_H
#define SMTPD_PYTEXT_H

#include <string>
#include <string_view>
#include <vector>

namespace smtpd {
namespace pytext {

/// repr(bytes): b'...' or b"..." with Python's escapes.
std::string bytes_repr(std::string_view data);
/// Appends repr(bytes) to `out` (bytes_repr without the temporary).
void append_bytes_repr(std::string& out, std::string_view data);
/// Length of the leading part of [p, p+n) that repr(bytes) shows as it is
/// between `quote`s: printable ASCII but the backslash and the quote.
size_t plain_prefix(const char* p, size_t n, char quote = '\'');
/// repr(str) of UTF-8 text: '...' or "...".
std::string str_repr(std::string_view utf8);
/// repr(list of str): ['A', 'B'].
std::string list_repr(const std::vector<std::string>& items);

/// True if `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool utf8_valid(std::string_view s);
/// str.strip() and str.split() with Python's whitespace set. `s` must be
/// valid UTF-8.
std::string_view strip(std::string_view s);
std::vector<std::string> split(std::string_view s);
/// str.upper(), exact for ASCII and Latin-1; other letters are unchanged.
std::string upper(std::string_view s);
/// str.isalnum(); non-ASCII letters count as alphanumeric.
bool isalnum(std::string_view s);
/// True if every byte is an ASCII digit and there is at least one.
bool isdigits(std::string_view s);

}  // namespace pytext
}  // namespace smtpd

#endif
