// A small RFC 5322 reader for SMTP paths: comments and folding white space,
// dot-atoms, quoted strings, domain literals, obsolete routes. It renders
// the address as the reference does (a local part that is not a dot-atom
// is re-quoted) and never throws.
#include "address.h"

namespace smtpd {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

// RFC 5322 specials plus white space end an atom; every other byte,
// non-ASCII included (RFC 6532), is atom text.
bool is_atext(char c) {
  switch (c) {
    case '(': case ')': case '<': case '>': case '@': case ',': case ':':
    case ';': case '.': case '\\': case '"': case '[': case ']':
    case ' ': case '\t':
      return false;
    default:
      return true;
  }
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }
  std::string_view rest() const { return s_.substr(i_); }
  void advance() { ++i_; }

  // Skips white space and (nested) comments. Returns true if it skipped any.
  bool cfws() {
    size_t start = i_;
    while (!at_end()) {
      if (is_wsp(s_[i_])) {
        ++i_;
      } else if (s_[i_] == '(') {
        int depth = 0;
        while (!at_end()) {
          char c = s_[i_++];
          if (c == '\\' && !at_end()) {
            ++i_;
          } else if (c == '(') {
            ++depth;
          } else if (c == ')' && --depth == 0) {
            break;
          }
        }
      } else {
        break;
      }
    }
    return i_ != start;
  }

  bool atom(std::string* out) {
    size_t start = i_;
    while (!at_end() && is_atext(s_[i_])) ++i_;
    if (i_ == start) return false;
    out->append(s_.substr(start, i_ - start));
    return true;
  }

  // A quoted string's content, unescaped. An unterminated one is taken to
  // the end, as the reference does.
  bool quoted(std::string* out) {
    if (peek() != '"') return false;
    ++i_;
    while (!at_end()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c == '\\' && !at_end()) c = s_[i_++];
      out->push_back(c);
    }
    return true;
  }

  // local-part, obsolete forms included: words joined by dots or white
  // space. Sets *plain when the result reads as a dot-atom.
  bool local_part(std::string* out, bool* plain) {
    *plain = true;
    bool any = false;
    bool need_sep = false;
    cfws();
    while (!at_end()) {
      char c = peek();
      if (c == '.') {
        out->push_back('.');
        ++i_;
        need_sep = false;
        any = true;
        cfws();
        continue;
      }
      if (c == '\\' && i_ + 1 < s_.size()) {  // obsolete quoted-pair
        if (need_sep) out->push_back(' ');
        out->append(s_.substr(i_, 2));
        i_ += 2;
        *plain = false;
        any = true;
        need_sep = cfws();
        continue;
      }
      if (c != '"' && !is_atext(c)) break;
      if (need_sep) {
        out->push_back(' ');
        *plain = false;
      }
      std::string word;
      if (c == '"') {
        quoted(&word);
        for (char w : word)
          if (!is_atext(w) && w != '.') *plain = false;
      } else {
        atom(&word);
      }
      out->append(word);
      any = true;
      need_sep = cfws();
    }
    return any;
  }

  // domain: a dot-atom or a domain literal. No empty labels, no trailing dot.
  bool domain(std::string* out) {
    cfws();
    if (peek() == '[') {
      size_t start = i_;
      while (!at_end() && s_[i_] != ']') {
        if (s_[i_] == '\\') ++i_;
        ++i_;
      }
      if (at_end()) return false;
      ++i_;
      out->append(s_.substr(start, i_ - start));
      cfws();
      return true;
    }
    for (;;) {
      if (!atom(out)) return false;
      cfws();
      if (peek() != '.') break;
      out->push_back('.');
      ++i_;
      cfws();
    }
    return peek() != '@';
  }

  // addr-spec: local-part ["@" domain]. A bare local part is an address,
  // as the reference allows.
  bool addr_spec(std::string* out) {
    std::string local;
    bool plain;
    if (!local_part(&local, &plain)) return false;
    if (!plain || local.find('"') != std::string::npos ||
        local.find('\\') != std::string::npos) {
      std::string q = "\"";
      for (char c : local) {
        if (c == '"' || c == '\\') q.push_back('\\');
        q.push_back(c);
      }
      local = q + "\"";
    }
    out->append(local);
    if (peek() != '@') return true;
    ++i_;
    out->push_back('@');
    return domain(out);
  }

  // obs-route: "@" domain *("," ["@" domain]) ":"; the route is dropped.
  bool obs_route() {
    while (peek() == '@' || peek() == ',') {
      if (peek() == ',') {
        ++i_;
        cfws();
        continue;
      }
      ++i_;
      std::string ignored;
      if (!route_domain(&ignored)) return false;
      cfws();
    }
    if (peek() != ':') return false;
    ++i_;
    return true;
  }

 private:
  bool route_domain(std::string* out) {
    cfws();
    for (;;) {
      if (!atom(out)) return false;
      cfws();
      if (peek() != '.') return true;
      ++i_;
      cfws();
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

ParsedPath parse_path(std::string_view arg) {
  ParsedPath p;
  if (arg.empty()) return p;
  // The angle form only when '<' is the first non-blank character.
  size_t lead = 0;
  while (lead < arg.size() && (arg[lead] == ' ' || arg[lead] == '\t')) ++lead;
  Reader r(arg.substr(lead));
  if (r.peek() == '<') {
    r.advance();
    if (r.peek() == '>') {  // the null path: what follows is kept as is
      r.advance();
      p.address = "<>";
      p.rest = std::string(r.rest());
      return p;
    }
    r.cfws();
    if (r.peek() == '@' && !r.obs_route()) {
      p.error = true;
      return p;
    }
    if (!r.addr_spec(&p.address) || p.address.empty()) {
      p.error = true;
      return p;
    }
    if (p.address[0] == '@') p.address = "\"\"" + p.address;
    r.cfws();
    if (r.peek() == '>') r.advance();
    r.cfws();
  } else {
    if (!r.addr_spec(&p.address)) {
      p.error = true;
      return p;
    }
  }
  p.rest = std::string(r.rest());
  return p;
}

}  // namespace smtpd
