// Dropping root: groups first, then the user, as setuid(2) after setgid(2)
// is the only order that works; the reference changed only the user and
// kept root's groups.
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vector>

namespace smtpd {
namespace privs {

bool lookup_user(const std::string& passwd_path, const std::string& name,
                 User* out) {
  FILE* f = fopen(passwd_path.c_str(), "r");
  if (!f) return false;
  char line[1024];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    // name:password:uid:gid:gecos:home:shell
    std::vector<std::string> fields;
    std::string cur;
    for (char* p = line; *p && *p != '\n'; ++p) {
      if (*p == ':') {
        fields.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(*p);
      }
    }
    fields.push_back(cur);
    if (fields.size() < 4 || fields[0] != name) continue;
    char* end1 = nullptr;
    char* end2 = nullptr;
    unsigned long uid = strtoul(fields[2].c_str(), &end1, 10);
    unsigned long gid = strtoul(fields[3].c_str(), &end2, 10);
    if (fields[2].empty() || *end1 || fields[3].empty() || *end2) continue;
    out->uid = static_cast<uid_t>(uid);
    out->gid = static_cast<gid_t>(gid);
    found = true;
  }
  fclose(f);
  return found;
}

bool drop_privileges(const std::string& name, std::string* error) {
  User u;
  if (!lookup_user("/etc/passwd", name, &u)) {
    *error = "no user \"" + name + "\" in /etc/passwd";
    return false;
  }
  // Already that user (and not root): nothing to give up, as for Python's
  // setuid(), though an unprivileged process may not reset its groups.
  bool already = geteuid() == u.uid && getuid() == u.uid && u.uid != 0;
  if (setgroups(1, &u.gid) != 0 && !(already && errno == EPERM)) {
    *error = std::string("setgroups: ") + strerror(errno);
    return false;
  }
  if (setgid(u.gid) != 0) {
    *error = std::string("setgid: ") + strerror(errno);
    return false;
  }
  if (setuid(u.uid) != 0) {
    *error = std::string("setuid: ") + strerror(errno);
    return false;
  }
  if (u.uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
    *error = "root privileges could be regained";
    return false;
  }
  return true;
}

}  // namespace privs
}  // namespace smtpd
