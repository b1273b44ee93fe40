// Python's text rules, as the reference's replies and output depend on them.
#include "pytext.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace smtpd {
namespace pytext {
namespace {

// Decodes one code point at s[i], advancing i; -1 for a bad sequence
// (then i advances by one byte).
long decode(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  int n;
  long cp;
  long min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 1; cp = c & 0x1F; min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 2; cp = c & 0x0F; min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 3; cp = c & 0x07; min = 0x10000;
  } else {
    ++i;
    return -1;
  }
  if (i + static_cast<size_t>(n) >= s.size()) {  // truncated sequence
    ++i;
    return -1;
  }
  for (int k = 1; k <= n; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      ++i;
      return -1;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return -1;
  }
  i += static_cast<size_t>(n) + 1;
  return cp;
}

// Python's str.isprintable() is false for these beyond Latin-1:
// separators (Zs, Zl, Zp), format characters (Cf) and private use (Co).
bool is_unprintable_wide(long cp) {
  return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) ||
         (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x2064) ||
         (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF ||
         (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0x0600 && cp <= 0x0605) ||
         cp == 0x061C || cp == 0x06DD || cp == 0x070F || cp == 0x180E ||
         (cp >= 0xE000 && cp <= 0xF8FF) || cp >= 0xF0000 ||
         (cp >= 0xE0000 && cp <= 0xE007F) || cp == 0x110BD;
}

bool is_space(long cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
         cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

void append_hex(std::string& out, unsigned v, int digits, const char* prefix) {
  char buf[16];
  snprintf(buf, sizeof buf, "%s%0*x", prefix, digits, v);
  out += buf;
}

char choose_quote(std::string_view s) {
  bool single = s.find('\'') != std::string_view::npos;
  bool dbl = s.find('"') != std::string_view::npos;
  return (single && !dbl) ? '"' : '\'';
}

void escape_common(std::string& out, unsigned char c, char quote) {
  if (c == '\\' || c == static_cast<unsigned char>(quote)) {
    out += '\\';
    out += static_cast<char>(c);
  } else if (c == '\t') {
    out += "\\t";
  } else if (c == '\n') {
    out += "\\n";
  } else if (c == '\r') {
    out += "\\r";
  } else if (c < 0x20 || c == 0x7F) {
    append_hex(out, c, 2, "\\x");
  } else {
    out += static_cast<char>(c);
  }
}

}  // namespace

size_t plain_prefix(const char* p, size_t n, char quote) {
  size_t i = 0;
#ifdef __SSE2__
  // Sixteen bytes a step. A signed compare puts 0x80..0xFF below 0x20 too.
  const __m128i space = _mm_set1_epi8(0x20);
  const __m128i del = _mm_set1_epi8(0x7F);
  const __m128i bs = _mm_set1_epi8('\\');
  const __m128i qq = _mm_set1_epi8(quote);
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i bad = _mm_or_si128(
        _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, del)),
        _mm_or_si128(_mm_cmpeq_epi8(v, bs), _mm_cmpeq_epi8(v, qq)));
    unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(bad));
    if (mask) return i + static_cast<size_t>(__builtin_ctz(mask));
  }
#else
  // Eight bytes a step: each word test is exact as a whole, not per byte.
  const uint64_t ones = 0x0101010101010101ull;
  const uint64_t high = ones * 0x80;
  const uint64_t bs = ones * '\\';
  const uint64_t qq = ones * static_cast<unsigned char>(quote);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    uint64_t low = (w - ones * 0x20) & ~w;  // a byte below 0x20
    uint64_t top = (w + ones) | w;          // a byte at or above 0x7F
    uint64_t x1 = w ^ bs;
    uint64_t x2 = w ^ qq;
    uint64_t eq = ((x1 - ones) & ~x1) | ((x2 - ones) & ~x2);
    if ((low | top | eq) & high) break;
  }
#endif
  for (; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(p[i]);
    if (c < 0x20 || c >= 0x7F || c == '\\' ||
        c == static_cast<unsigned char>(quote))
      break;
  }
  return i;
}

void append_bytes_repr(std::string& out, std::string_view data) {
  char q = choose_quote(data);
  out += 'b';
  out += q;
  const char* p = data.data();
  size_t n = data.size();
  while (n > 0) {
    size_t run = plain_prefix(p, n, q);
    out.append(p, run);
    if (run == n) break;
    unsigned char c = static_cast<unsigned char>(p[run]);
    if (c >= 0x80)
      append_hex(out, c, 2, "\\x");
    else
      escape_common(out, c, q);
    p += run + 1;
    n -= run + 1;
  }
  out += q;
}

std::string bytes_repr(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 3);
  append_bytes_repr(out, data);
  return out;
}

std::string str_repr(std::string_view s) {
  char q = choose_quote(s);
  std::string out;
  out += q;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    long cp = decode(s, i);
    if (cp < 0) {  // not text: show the byte as Python shows a surrogate
      append_hex(out, static_cast<unsigned char>(s[start]) + 0xDC00u, 4, "\\u");
    } else if (cp < 0x80) {
      escape_common(out, static_cast<unsigned char>(cp), q);
    } else if (cp <= 0xA0 || cp == 0xAD) {  // C1 controls, NBSP, soft hyphen
      append_hex(out, static_cast<unsigned>(cp), 2, "\\x");
    } else if (is_unprintable_wide(cp)) {
      if (cp <= 0xFFFF)
        append_hex(out, static_cast<unsigned>(cp), 4, "\\u");
      else
        append_hex(out, static_cast<unsigned>(cp), 8, "\\U");
    } else {
      out.append(s.data() + start, i - start);
    }
  }
  out += q;
  return out;
}

std::string list_repr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += str_repr(items[i]);
  }
  out += "]";
  return out;
}

bool utf8_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  while (i < s.size())
    if (decode(s, i) < 0) return false;
  return true;
}

std::string_view strip(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    size_t i = b;
    if (!is_space(decode(s, i))) break;
    b = i;
  }
  size_t e = s.size();
  while (e > b) {
    // Step back to the start of the last code point.
    size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80)
      --start;
    size_t i = start;
    if (!is_space(decode(s, i)) || i != e) break;
    e = start;
  }
  return s.substr(b, e - b);
}

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  size_t word = std::string_view::npos;
  while (i < s.size()) {
    size_t start = i;
    bool space = is_space(decode(s, i));
    if (space && word != std::string_view::npos) {
      out.emplace_back(s.substr(word, start - word));
      word = std::string_view::npos;
    } else if (!space && word == std::string_view::npos) {
      word = start;
    }
  }
  if (word != std::string_view::npos) out.emplace_back(s.substr(word));
  return out;
}

std::string upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    long cp = decode(s, i);
    if (cp >= 'a' && cp <= 'z') {
      out += static_cast<char>(cp - 32);
    } else if (cp == 0xDF) {  // sharp s
      out += "SS";
    } else if (cp == 0xB5) {  // micro sign -> GREEK CAPITAL MU
      out += "\xCE\x9C";
    } else if (cp == 0xFF) {  // y diaeresis -> U+0178
      out += "\xC5\xB8";
    } else if ((cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)) {
      long u = cp - 32;
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    } else {
      out.append(s.data() + start, i - start);
    }
  }
  return out;
}

bool isalnum(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();) {
    long cp = decode(s, i);
    if (cp < 0) return false;
    if (cp < 0x80) {
      bool ok = (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
                (cp >= 'A' && cp <= 'Z');
      if (!ok) return false;
    } else if (cp <= 0xBF) {
      // Latin-1 below the letters: only these are letters or digits.
      bool ok = cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 ||
                cp == 0xB9 || cp == 0xBA || cp == 0xBC || cp == 0xBD ||
                cp == 0xBE;
      if (!ok) return false;
    } else if (cp == 0xD7 || cp == 0xF7 || is_space(cp) ||
               is_unprintable_wide(cp)) {
      return false;
    }
  }
  return true;
}

bool isdigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace pytext
}  // namespace smtpd
