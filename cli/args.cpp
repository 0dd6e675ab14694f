// Parsing a subcommand's options, and reading their values.
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <iostream>

#include "cli.hpp"
#include "common/errno_text.hpp"

namespace jobring::cli {

void usage(const std::string& command, const std::string& message) {
  throw UsageError{"jobring " + command + ": " + message + " (see jobring " + command + " --help)"};
}

void add_name(Command& c) {
  c.hidden.add_options()("name", po::value<std::string>());
  c.positional.add("name", 1);
}

po::variables_map parse(Command& c, const std::vector<std::string>& args) {
  po::options_description all;
  c.options.add_options()("url", po::value<std::string>(),
                          "where the queues are: shm: (this host's shared memory), redis://HOST:PORT, "
                          "redis+unix:///PATH/redis.sock or redis+cluster://HOST:PORT,...; default: "
                          "$JOBRING_URL, else shm:")("help,h", "show this help");
  all.add(c.options).add(c.hidden);
  po::variables_map vm;
  try {
    // No abbreviations: a script that says --del would break when another
    // option starting with "del" is added.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(args).options(all).positional(c.positional).style(style).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    usage(c.name, e.what());
  }
  if (vm.count("url")) set_url(vm["url"].as<std::string>());
  if (vm.count("help")) {
    std::cout << "Usage: jobring " << c.name << ' ' << c.synopsis << "\n\n"
              << c.summary << "\n\n"
              << c.options << '\n'
              << "Durations are written 500ms, 30s, 2m, 1h or 1d.\n"
              << kExitCodes;
    throw Exit{kOk, ""};
  }
  return vm;
}

milliseconds duration_arg(const Command& c, const po::variables_map& vm, const char* key,
                          milliseconds fallback) {
  if (!vm.count(key)) return fallback;
  const std::string text = vm[key].as<std::string>();
  const auto d = jobring::parse_duration(text);
  if (!d)
    usage(c.name,
          std::string("bad duration '") + text + "' for --" + key + ": write e.g. 500ms, 30s, 2m, 1h or 1d");
  if (*d > jobring::kMaxLease)
    usage(c.name, std::string("--") + key + " " + text +
                      " is longer than the limit of 7 days (jobring's bound on leases and "
                      "delays; schedule longer waits outside, e.g. with a systemd timer that pushes later)");
  return *d;
}

// Numbers are parsed here, not by Boost: Boost reads "-1" into an unsigned
// as 4294967295.
std::uint32_t count_arg(const Command& c, const po::variables_map& vm, const char* option) {
  const std::string text = vm[option].as<std::string>();
  std::uint32_t v = 0;
  const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || err != std::errc{} || end != text.data() + text.size())
    usage(c.name,
          "bad --" + std::string(option) + " '" + text + "': write a whole number from 0 to 4294967295");
  return v;
}

std::string name_arg(const Command& c, const po::variables_map& vm) {
  if (!vm.count("name")) usage(c.name, "missing the queue NAME");
  std::string name = vm["name"].as<std::string>();
  if (auto ec = jobring::check_name(name)) usage(c.name, "bad queue name '" + name + "': " + ec.message());
  return name;
}

Lease handle_arg(const Command& c, const po::variables_map& vm) {
  if (!vm.count("handle")) usage(c.name, "missing the HANDLE printed by `jobring claim`");
  const std::string text = vm["handle"].as<std::string>();
  const auto lease = jobring::Lease::parse(text);
  if (!lease)
    usage(c.name, "malformed handle '" + text + "': pass the \"handle\" field printed by `jobring claim`");
  return *lease;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Exit{kError, std::string("jobring: cannot read stdin: ") + tools::errno_text(errno)};
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace jobring::cli
