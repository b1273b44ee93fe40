// Internal header. The command line, parsed as the reference parses it
// (getopt: options stop at the first operand; long options may be
// abbreviated to a unique prefix), into a plain result main() acts on.
#ifndef SMTPD_CLI_H
#define SMTPD_CLI_H

#include <string>
#include <vector>

#include "smtpd/smtpd.h"

namespace smtpd {
namespace cli {

struct Options {
  bool setuid = true;
  std::string classname = "PureProxy";
  bool debug = false;
  HostPort local{"localhost", 8025};
  HostPort remote{"localhost", 25};
  ServerOptions server;
  int workers = 1;
};

struct Result {
  bool run = false;     // false: print out/err and exit with exit_code
  int exit_code = 0;
  std::string out;      // for stdout
  std::string err;      // for stderr
  Options options;
};

/// The usage text, as -h prints it. `program` is argv[0].
std::string usage(const std::string& program);

/// Parses argv (argv[0] is the program name). Never exits or prints.
Result parse(const std::vector<std::string>& argv);

}  // namespace cli
}  // namespace smtpd

#endif
