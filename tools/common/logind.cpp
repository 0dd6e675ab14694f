#include "common/logind.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>
#include <vector>

namespace jobring::tools {

namespace {

// logind (systemd's loginctl/logind-core) treats uids up to SYSTEM_UID_MAX,
// 999 on Debian, as system users, whose IPC it never removes.
constexpr unsigned kFirstRegularUid = 1000;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// systemd's boolean words; nullopt-like -1 for anything else (logind then
// ignores the line).
int parse_bool(std::string_view v) {
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (s == "1" || s == "yes" || s == "y" || s == "true" || s == "t" || s == "on") return 1;
  if (s == "0" || s == "no" || s == "n" || s == "false" || s == "f" || s == "off") return 0;
  return -1;
}

// Applies the RemoveIPC= lines of [Login] in `path` (if it can be read).
void apply_file(const std::string& path, RemoveIpc& r) {
  std::ifstream in(path);
  if (!in) return;
  std::string section;
  for (std::string raw; std::getline(in, raw);) {
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      section = std::string(line);
      continue;
    }
    const auto eq = line.find('=');
    if (section != "[Login]" || eq == std::string_view::npos || trim(line.substr(0, eq)) != "RemoveIPC")
      continue;
    const std::string_view value = trim(line.substr(eq + 1));
    if (value.empty()) {  // an empty assignment resets to the default
      r = RemoveIpc{};
      continue;
    }
    const int b = parse_bool(value);
    if (b < 0) continue;
    r.on = b == 1;
    r.source = path;
  }
}

}  // namespace

RemoveIpc logind_remove_ipc() {
  std::string main = "/etc/systemd/logind.conf";
  std::vector<std::string> dropin_dirs{"/etc/systemd/logind.conf.d", "/run/systemd/logind.conf.d",
                                       "/usr/local/lib/systemd/logind.conf.d",
                                       "/usr/lib/systemd/logind.conf.d"};
  if (const char* test = std::getenv("JOBRING_LOGIND_CONF"); test != nullptr && *test != '\0') {
    main = test;
    dropin_dirs = {main + ".d"};
  }
  RemoveIpc r;
  apply_file(main, r);
  std::map<std::string, std::string> dropins;  // file name -> path; the first directory's wins
  for (const std::string& dir : dropin_dirs) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.size() > 5 && name.ends_with(".conf")) dropins.emplace(name, e.path().string());
    }
  }
  for (const auto& [name, path] : dropins) apply_file(path, r);
  return r;
}

std::string remove_ipc_warning(const std::string& name, const std::string& segment_path) {
  struct ::stat st {};
  if (::stat(segment_path.c_str(), &st) != 0 || st.st_uid < kFirstRegularUid) return "";
  const RemoveIpc r = logind_remove_ipc();
  if (!r.on) return "";
  return "warning: queue " + name + " belongs to uid " + std::to_string(st.st_uid) +
         ", and systemd-logind deletes the shared memory of users with a uid of 1000 or more when their last "
         "session ends (RemoveIPC=yes, " +
         (r.source.empty() ? std::string("the default") : "set in " + r.source) +
         "): the queue and every job in it would vanish at logout. Create it as a system user (the service's "
         "User=), or set RemoveIPC=no in /etc/systemd/logind.conf.";
}

}  // namespace jobring::tools
