// systemd-logind's RemoveIPC=: when it is on (the default, and Debian 12's),
// logind deletes every POSIX shared-memory segment of a user whose uid is
// 1000 or above when that user's last login session ends. A queue owned by
// such a user then vanishes with its jobs: `jobring create` and `jobring
// stat` warn about it.
#pragma once

#include <string>

namespace jobring::tools {

struct RemoveIpc {
  bool on = true;      // systemd's compiled-in default
  std::string source;  // the file whose line decided it, or "" for the default
};

// RemoveIPC= as logind reads it: [Login] of /etc/systemd/logind.conf, then
// the drop-ins *.conf of /etc, /run, /usr/local/lib and /usr/lib
// systemd/logind.conf.d (a name in an earlier directory hides the same name
// in a later one) in the order of their names; the last setting wins. The
// environment variable JOBRING_LOGIND_CONF (for the tests) replaces the main
// file, and its drop-ins are then read from that path + ".d" only.
[[nodiscard]] RemoveIpc logind_remove_ipc();

// The warning to print about queue `name` (its segment at `segment_path`), or
// "" if its owner is a system user (uid below 1000) or RemoveIPC is off.
[[nodiscard]] std::string remove_ipc_warning(const std::string& name, const std::string& segment_path);

}  // namespace jobring::tools
