// A temporary directory for a test, removed with its contents by the
// destructor (config files, metrics files, marker files of child commands).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace jobring::test {

class TempDir {
 public:
  // $TMPDIR (or /tmp)/jobring-test.TAG.PID.XXXXXX
  explicit TempDir(const std::string& tag = "d") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/jobring-test." +
                       tag + "." + std::to_string(::getpid()) + ".XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& str() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
  [[nodiscard]] bool has(const std::string& name) const { return std::filesystem::exists(file(name)); }
  // The whole file `name` ("" if it cannot be read).
  [[nodiscard]] std::string read(const std::string& name) const {
    std::ifstream f(file(name), std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  void touch(const std::string& name) const { std::ofstream(file(name)).put('\n'); }
  // The names of its entries, sorted.
  [[nodiscard]] std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  // How many of its entries' names start with `prefix`.
  [[nodiscard]] std::size_t count_prefix(const std::string& prefix) const {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(path_))
      if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
    return n;
  }

 private:
  std::string path_;
};

}  // namespace jobring::test
