// Internal header. Giving up root after the port is bound.
#ifndef SMTPD_PRIVS_H
#define SMTPD_PRIVS_H

#include <sys/types.h>

#include <string>

namespace smtpd {
namespace privs {

struct User {
  uid_t uid;
  gid_t gid;
};

/// Finds `name` in a passwd(5) file. Read directly, not through NSS, so a
/// static binary needs no shared libraries for it.
bool lookup_user(const std::string& passwd_path, const std::string& name,
                 User* out);

/// Becomes `name`: supplementary groups cleared, then the group, then the
/// user, each checked, and root verified to be gone. False (with *error)
/// on any failure; the process must then not go on.
bool drop_privileges(const std::string& name, std::string* error);

}  // namespace privs
}  // namespace smtpd

#endif
