// Runs a command (fork + exec) and returns its exit status and its stdout and
// stderr together: for the tests of what gets installed and of external tools
// (cmake --install, pkg-config, systemd-analyze, promtool, the installed
// binaries). Missing tools are found with find_tool() so that a test can skip
// with a message instead of failing.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "support/test_support.hpp"

namespace jobring::test {

struct CommandResult {
  int status = -1;  // exit status, or 128 + signal (wait_child)
  std::string output;
};

// `argv[0]` is a path. `env` entries are NAME=VALUE, added to (or replacing
// in) the test's environment; `as_uid`/`as_gid` (when >= 0, as root) switch
// user first.
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 const std::vector<std::pair<std::string, std::string>>& env = {},
                                 long as_uid = -1, long as_gid = -1) {
  TempFile out("cmd-out");
  const pid_t pid = fork_child([&]() -> int {
    const int fd = out.open_append();
    if (fd < 0) return 126;
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    if (as_gid >= 0 && ::setgid(static_cast<gid_t>(as_gid)) != 0) return 125;
    if (as_uid >= 0 && ::setuid(static_cast<uid_t>(as_uid)) != 0) return 125;
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    return 127;
  });
  CommandResult r;
  r.status = wait_child(pid);
  r.output = out.contents();
  return r;
}

// /bin/sh -c `script`.
inline CommandResult run_shell(const std::string& script,
                               const std::vector<std::pair<std::string, std::string>>& env = {}) {
  return run_command({"/bin/sh", "-c", script}, env);
}

// The path of an executable `name` in the usual directories, or "".
inline std::string find_tool(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

}  // namespace jobring::test
