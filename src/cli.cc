// Command-line parsing. Errors read as the reference's do: the usage text,
// then one line saying what was wrong, exit status 1.
#include "cli.h"

#include <errno.h>
#include <stdlib.h>

#include <functional>

namespace smtpd {
namespace cli {
namespace {

struct LongOpt {
  const char* name;
  bool takes_arg;
  char short_equiv;  // 0 for long-only options
};

const LongOpt kLongOpts[] = {
    {"nosetuid", false, 'n'},       {"version", false, 'V'},
    {"help", false, 'h'},           {"class", true, 'c'},
    {"size", true, 's'},            {"smtputf8", false, 'u'},
    {"debug", false, 'd'},          {"workers", true, 'j'},
    {"timeout", true, 0},           {"data-timeout", true, 0},
    {"max-connections", true, 0},   {"max-recipients", true, 0},
    {"relay-connect-timeout", true, 0}, {"relay-timeout", true, 0},
    {"mailman-lists", true, 0},     {"mailman-wrapper", true, 0},
    {"mailman-timeout", true, 0},   {"max-buffered", true, 0},
};
// The first seven entries are the reference's own long options.
const long kReferenceLongOpts = 7;
const char kShortOpts[] = "nVhc:s:duj:";

bool short_takes_arg(char c, bool* known) {
  for (const char* p = kShortOpts; *p; ++p) {
    if (*p == ':') continue;
    if (*p == c) {
      *known = true;
      return p[1] == ':';
    }
  }
  *known = false;
  return false;
}

// Python's int(): optional sign and surrounding white space. We refuse
// negatives where they make no sense (the caller decides).
bool parse_int(const std::string& s, long long* out) {
  size_t b = s.find_first_not_of(" \t\n\r\f\v");
  size_t e = s.find_last_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return false;
  std::string t = s.substr(b, e - b + 1);
  if (t.empty()) return false;
  size_t i = (t[0] == '+' || t[0] == '-') ? 1 : 0;
  if (i == t.size()) return false;
  // Python also allows single underscores between digits ("1_000").
  std::string digits = t.substr(0, i);
  for (size_t k = i; k < t.size(); ++k) {
    if (t[k] == '_' && k > i && k + 1 < t.size() && t[k - 1] != '_' &&
        t[k + 1] >= '0' && t[k + 1] <= '9')
      continue;
    if (t[k] < '0' || t[k] > '9') return false;
    digits.push_back(t[k]);
  }
  t = digits;
  errno = 0;
  long long v = strtoll(t.c_str(), nullptr, 10);
  if (errno == ERANGE) return false;
  *out = v;
  return true;
}

bool parse_seconds(const std::string& s, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE || !(v >= 0) || v > 1e9)
    return false;
  *out = v;
  return true;
}

// "host:port", "[v6]:port" or ":port". False if there is no colon;
// *port_ok false if the port is not a number in 0..65535.
bool split_spec(const std::string& spec, HostPort* hp, bool* port_ok) {
  std::string host, port;
  if (!spec.empty() && spec[0] == '[') {
    size_t close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() ||
        spec[close + 1] != ':')
      return false;
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    size_t colon = spec.find(':');
    if (colon == std::string::npos) return false;
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  long long p;
  *port_ok = parse_int(port, &p) && p >= 0 && p <= 65535;
  hp->host = host;
  hp->port = *port_ok ? static_cast<int>(p) : 0;
  return true;
}

Result fail(const std::string& program, const std::string& msg) {
  Result r;
  r.exit_code = 1;
  r.err = usage(program) + "\n" + msg + "\n";
  return r;
}

Result done(int code, std::string out, std::string err) {
  Result r;
  r.exit_code = code;
  r.out = std::move(out);
  r.err = std::move(err);
  return r;
}

}  // namespace

std::string usage(const std::string& program) {
  return "An RFC 5321 SMTP proxy with the RFC 1870 and RFC 6531 extensions.\n"
         "\n"
         "Usage: " + program + " [options] [localhost:localport [remotehost:remoteport]]\n"
         "\n"
         "Options:\n"
         "\n"
         "    --nosetuid\n"
         "    -n\n"
         "        Do not switch to the user `nobody'. Without this flag the\n"
         "        program binds its port and then becomes `nobody', which only\n"
         "        root may do; everyone else needs -n.\n"
         "\n"
         "    --version\n"
         "    -V\n"
         "        Print the version and exit.\n"
         "\n"
         "    --class classname\n"
         "    -c classname\n"
         "        The server class: SMTPServer, DebuggingServer, PureProxy or\n"
         "        MailmanProxy (also as smtpd.NAME). Default: PureProxy.\n"
         "\n"
         "    --size limit\n"
         "    -s limit\n"
         "        Refuse messages longer than `limit' bytes, announced with the\n"
         "        RFC 1870 SIZE extension. Default: 33554432; 0 means no limit.\n"
         "\n"
         "    --smtputf8\n"
         "    -u\n"
         "        Offer the SMTPUTF8 extension (RFC 6531). The proxy classes\n"
         "        refuse it.\n"
         "\n"
         "    --debug\n"
         "    -d\n"
         "        Print the protocol exchange and state changes on stderr.\n"
         "\n"
         "    --help\n"
         "    -h\n"
         "        Print this message and exit.\n"
         "\n"
         "Options this version adds:\n"
         "\n"
         "    --workers N, -j N\n"
         "        Run N single-threaded worker processes on the same port.\n"
         "        Default: 1.\n"
         "    --timeout SECONDS\n"
         "        Close a session idle this long between commands, with a 421.\n"
         "        Default: 300. 0 disables it.\n"
         "    --data-timeout SECONDS\n"
         "        The same while a message is being sent. Default: 600.\n"
         "        0 disables it.\n"
         "    --max-connections N\n"
         "        Answer 421 to clients past N open sessions. Default: 0, no cap\n"
         "        but the descriptor limit.\n"
         "    --max-recipients N\n"
         "        Answer 452 to recipients past N in one message. Default: 1000;\n"
         "        0 means no limit.\n"
         "    --max-buffered BYTES\n"
         "        Message bytes all sessions together may hold in memory; a\n"
         "        message that would pass it gets 452. Default: 268435456\n"
         "        (256 MiB); 0 means no limit.\n"
         "    --relay-connect-timeout SECONDS, --relay-timeout SECONDS\n"
         "        PureProxy: how long to wait for the remote host to accept the\n"
         "        connection (default 30) and for each of its replies\n"
         "        (default 120). A timeout is a 451 to the client.\n"
         "    --mailman-lists DIR, --mailman-wrapper PATH, --mailman-timeout S\n"
         "        MailmanProxy: the Mailman 2 lists directory (default\n"
         "        /var/lib/mailman/lists), its mail wrapper (default\n"
         "        /usr/lib/mailman/mail/mailman) and how long it may run\n"
         "        (default 120).\n"
         "\n"
         "Version: " + std::string(__version__) + "\n"
         "\n"
         "If localhost is not given then `localhost' is used, and if localport is\n"
         "not given then 8025 is used. If remotehost is not given then `localhost'\n"
         "is used, and if remoteport is not given, then 25 is used. Write an IPv6\n"
         "address in brackets: [::1]:8025.\n";
}

Result parse(const std::vector<std::string>& argv) {
  const std::string program = argv.empty() ? "smtpd" : argv[0];
  std::vector<std::pair<std::string, std::string>> opts;  // name, value
  size_t i = 1;

  // Pass 1, as getopt: collect (option, value) pairs; first error wins.
  for (; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.size() < 2 || a[0] != '-') break;
    if (a[1] == '-') {
      std::string name = a.substr(2), value;
      size_t eq = name.find('=');
      bool has_value = eq != std::string::npos;
      if (has_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      const LongOpt* match = nullptr;
      int matches = 0;
      const LongOpt* ref_match = nullptr;  // among the reference's seven
      int ref_matches = 0;
      for (const LongOpt& lo : kLongOpts) {
        std::string n = lo.name;
        if (n == name) {
          match = &lo;
          matches = 1;
          ref_matches = 0;
          break;
        }
        if (n.compare(0, name.size(), name) == 0) {
          match = &lo;
          ++matches;
          if (&lo - kLongOpts < kReferenceLongOpts) {
            ref_match = &lo;
            ++ref_matches;
          }
        }
      }
      // A prefix the reference accepted keeps its meaning here.
      if (matches > 1 && ref_matches == 1) {
        match = ref_match;
        matches = 1;
      }
      if (matches == 0) return fail(program, "option --" + name + " not recognized");
      if (matches > 1) return fail(program, "option --" + name + " not a unique prefix");
      if (match->takes_arg && !has_value) {
        if (i + 1 >= argv.size())
          return fail(program, "option --" + std::string(match->name) + " requires argument");
        value = argv[++i];
      } else if (!match->takes_arg && has_value) {
        return fail(program, "option --" + std::string(match->name) + " must not have an argument");
      }
      opts.emplace_back("--" + std::string(match->name), value);
      continue;
    }
    for (size_t k = 1; k < a.size(); ++k) {
      bool known;
      bool takes = short_takes_arg(a[k], &known);
      std::string opt = std::string("-") + a[k];
      if (!known) return fail(program, "option " + opt + " not recognized");
      if (!takes) {
        opts.emplace_back(opt, "");
        continue;
      }
      std::string value = a.substr(k + 1);
      if (value.empty()) {
        if (i + 1 >= argv.size())
          return fail(program, "option " + opt + " requires argument");
        value = argv[++i];
      }
      opts.emplace_back(opt, value);
      break;
    }
  }
  std::vector<std::string> args(argv.begin() + static_cast<long>(std::min(i, argv.size())),
                                argv.end());

  // Pass 2: act on the options in order, as the reference does.
  Result r;
  Options& o = r.options;
  for (const auto& [opt, val] : opts) {
    long long n;
    double secs;
    if (opt == "-h" || opt == "--help") return done(0, "", usage(program));
    if (opt == "-V" || opt == "--version")
      return done(0, std::string(__version__) + "\n", "");
    if (opt == "-n" || opt == "--nosetuid") {
      o.setuid = false;
    } else if (opt == "-c" || opt == "--class") {
      o.classname = val;
    } else if (opt == "-d" || opt == "--debug") {
      o.debug = true;
    } else if (opt == "-u" || opt == "--smtputf8") {
      o.server.enable_SMTPUTF8 = true;
    } else if (opt == "-s" || opt == "--size") {
      // The reference takes negative sizes and then refuses every message.
      if (!parse_int(val, &n) || n < 0)
        return done(1, "", "Invalid size: " + val + "\n");
      o.server.data_size_limit = static_cast<size_t>(n);
    } else if (opt == "-j" || opt == "--workers") {
      if (!parse_int(val, &n) || n < 1 || n > 256)
        return done(1, "", "Invalid number of workers: " + val + "\n");
      o.workers = static_cast<int>(n);
    } else if (opt == "--max-buffered") {
      if (!parse_int(val, &n) || n < 0)
        return done(1, "", "Invalid max-buffered: " + val + "\n");
      o.server.max_buffered = static_cast<size_t>(n);
    } else if (opt == "--max-connections" || opt == "--max-recipients") {
      if (!parse_int(val, &n) || n < 0)
        return done(1, "", "Invalid " + opt.substr(2) + ": " + val + "\n");
      (opt == "--max-connections" ? o.server.max_connections
                                  : o.server.max_recipients) =
          static_cast<size_t>(n);
    } else if (opt == "--mailman-lists") {
      o.server.mailman_lists = val;
    } else if (opt == "--mailman-wrapper") {
      o.server.mailman_wrapper = val;
    } else {  // the timeouts
      if (!parse_seconds(val, &secs))
        return done(1, "", "Invalid " + opt.substr(2) + ": " + val + "\n");
      if (opt == "--timeout") o.server.timeout = secs;
      else if (opt == "--data-timeout") o.server.data_timeout = secs;
      else if (opt == "--relay-connect-timeout") o.server.relay_connect_timeout = secs;
      else if (opt == "--relay-timeout") o.server.relay_timeout = secs;
      else if (opt == "--mailman-timeout") o.server.mailman_timeout = secs;
    }
  }

  std::string localspec = "localhost:8025", remotespec = "localhost:25";
  if (args.size() >= 1) localspec = args[0];
  if (args.size() >= 2) remotespec = args[1];
  if (args.size() > 2) {
    std::string joined;
    for (size_t k = 0; k < args.size(); ++k) joined += (k ? ", " : "") + args[k];
    return fail(program, "Invalid arguments: " + joined);
  }
  bool port_ok;
  if (!split_spec(localspec, &o.local, &port_ok))
    return fail(program, "Bad local spec: " + localspec);
  if (!port_ok) return fail(program, "Bad local port: " + localspec);
  if (!split_spec(remotespec, &o.remote, &port_ok))
    return fail(program, "Bad remote spec: " + remotespec);
  if (!port_ok) return fail(program, "Bad remote port: " + remotespec);
  r.run = true;
  return r;
}

}  // namespace cli
}  // namespace smtpd
