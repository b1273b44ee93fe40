// Internal header. MailmanProxy's pieces: which recipients are Mailman 2
// lists, the message as the wrapper gets it, and running the wrapper
// without blocking the reactor.
#ifndef SMTPD_MAILMAN_H
#define SMTPD_MAILMAN_H

#include <sys/types.h>
#include <time.h>

#include <functional>
#include <optional>
#include <string>

#include "smtpd/asyncore.h"

namespace smtpd {
namespace mailman {

/// A list address: the list's name (lower case) and the wrapper command
/// ("post", "admin", "owner", "request", "join", "leave").
struct Target {
  std::string list;
  std::string command;
};

/// The target `address` names, if its local part is LIST or LIST-COMMAND
/// and `lists_dir`/LIST is a directory. List names are matched in lower
/// case, as Mailman stores them, and must be letters, digits, '.', '_'
/// and '-' without a leading dot.
std::optional<Target> list_target(const std::string& address,
                                  const std::string& lists_dir);

/// `data` (LF-joined lines) with "From: mailfrom" and a "Date:" for `now`
/// added at the end of the headers when missing, ending in LF.
std::string prepare_message(const std::string& data,
                            const std::string& mailfrom, time_t now);

/// How one wrapper run ended.
struct Outcome {
  enum Kind { ok, temporary, permanent };
  Kind kind = ok;
  std::string detail;  // "exit status 1", "timed out after 120 s", ...
};

/// Runs "wrapper command list" with `message` on its standard input:
/// fork/execve with an argument vector (no shell), input fed through a
/// non-blocking socket, the child's exit polled with waitpid(WNOHANG) from
/// a timer and the child killed after `timeout` seconds (0: no limit).
/// `done` is called once, from the reactor; a run that cannot start calls
/// it before this returns. Exit status 0 is ok, 75 (EX_TEMPFAIL) and a
/// timeout are temporary, anything else permanent.
void run_wrapper(asyncore::socket_map& map, const std::string& wrapper,
                 const Target& target, const std::string& message,
                 double timeout, std::function<void(const Outcome&)> done);

}  // namespace mailman
}  // namespace smtpd

#endif
