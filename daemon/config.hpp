// jobring-janitor's configuration: the command line wins over the config
// file. Also the exit codes (documented in --help and the README).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "log.hpp"

namespace jobring::janitor {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // a fatal runtime error (e.g. cannot install signal handlers)
constexpr int kExitUsage = 2;    // bad command line
constexpr int kExitConfig = 3;   // bad or unreadable config file

struct Config {
  std::vector<std::string> queues;  // empty: every jobring queue on the host
  // --dir DIR: directories of file-backed queues (Options::dir) that "every
  // queue on the host" takes in too (their queues are named DIR/NAME).
  std::vector<std::string> dirs;
  // --url redis://...: Redis servers (url = in the config file), every queue
  // of which each sweep looks after too (AnyQueue::list, sweep, stats).
  std::vector<std::string> urls;
  // --dead-letter SRC=DST: every sweep moves SRC's dead jobs into DST (Queue::move_dead).
  std::map<std::string, std::string> dead_letter;
  std::chrono::milliseconds interval{50};
  Level level = Level::info;
  std::string metrics_file;
  std::string config_file = "/etc/jobring/janitor.conf";
  bool config_explicit = false;
  bool once = false;
};

struct ConfigError {
  int exit_code;
  std::string message;
};

// Reads the command line and the config file. nullopt with `err` set on a
// problem, or with `exit_now` set after --help or --version (printed here).
std::optional<Config> load_config(int argc, char** argv, ConfigError& err, bool& exit_now);

}  // namespace jobring::janitor
