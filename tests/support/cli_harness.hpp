// Running the real `jobring` binary in tests (tests/cli/test_cli.cpp, and
// tests/redis/test_cli_redis.cpp on a Redis server): a child process with
// pipes on stdin, stdout and stderr (Proc), run to completion (jr) or in the
// background (jr_bg), in its own process group and killed with this test
// process; and a small strict JSON reader for what it prints.
//
// The child inherits this process's environment (plus Proc's `env`): a test
// that sets JOBRING_URL with setenv() runs every command on that backend.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace jobring::test {

using namespace std::chrono_literals;

// The binary under test: JOBRING_TEST_CLI from the environment if set (to
// test an installed or a deliberately broken build), else the one built here.
inline const char* cli_binary() {
  const char* env = std::getenv("JOBRING_TEST_CLI");
  if (env != nullptr && *env != '\0') return env;
#ifdef JOBRING_CLI_BIN
  return JOBRING_CLI_BIN;
#else
  return nullptr;  // the CLI is not built (JOBRING_BUILD_CLI=OFF): the tests skip
#endif
}
inline const char* const kCli = cli_binary();

// ---------------------------------------------------------------------------
// Running a process: Proc (in the background) and run() (to completion).
// ---------------------------------------------------------------------------

struct Result {
  int code = -1;  // exit status, 128 + signal number, or -1 if it was killed for taking too long
  std::string out;
  std::string err;
};

// The command line and its outcome, for failure messages.
inline std::string show(const std::vector<std::string>& argv, const Result& r) {
  std::string s = "\n  $";
  for (const auto& a : argv) s += " '" + a + "'";
  s += "\n  exit " + std::to_string(r.code) + "\n  stdout: [" + r.out.substr(0, 3000) + "]\n  stderr: [" +
       r.err.substr(0, 3000) + "]";
  return s;
}

inline void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// A child process with its stdin fed from a string and its stdout and stderr
// collected. `env` entries "NAME=VALUE" are added to (or replace those of)
// this process's environment; an entry "NAME" removes NAME.
class Proc {
 public:
  explicit Proc(std::vector<std::string> argv, std::string input = {},
                const std::vector<std::string>& env = {})
      : argv_(std::move(argv)), input_(std::move(input)) {
    // A child that exits before reading its stdin must not kill us with SIGPIPE.
    ::signal(SIGPIPE, SIG_IGN);
    // Everything the child needs is built before fork(): between fork and
    // exec only async-signal-safe calls (this process has other threads).
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) envs.emplace_back(*e);
    for (const auto& kv : env) {
      const std::string key = kv.substr(0, kv.find('='));
      envs.erase(
          std::remove_if(envs.begin(), envs.end(),
                         [&](const std::string& s) { return s.compare(0, key.size() + 1, key + "=") == 0; }),
          envs.end());
      if (kv.find('=') != std::string::npos) envs.push_back(kv);
    }
    std::vector<char*> cargv;
    for (auto& a : argv_) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<char*> cenv;
    for (auto& e : envs) cenv.push_back(e.data());
    cenv.push_back(nullptr);

    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2 failed");
    const pid_t parent = ::getpid();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(98);
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(SIGPIPE, &dfl, nullptr);  // ignored dispositions survive exec: restore it
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::execve(cargv[0], cargv.data(), cenv.data());
      static const char msg[] = "test_cli: execve failed\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);  // also here, so the group exists before we may signal it
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    in_ = in[1];
    out_fd_ = out[0];
    err_fd_ = err[0];
    set_nonblocking(in_);
    set_nonblocking(out_fd_);
    set_nonblocking(err_fd_);
    if (input_.empty()) close_fd(in_);
  }

  ~Proc() {
    if (!status_) {
      ::kill(-pid_, SIGKILL);  // the leader is not reaped yet, so the group id is still ours
      ::kill(pid_, SIGKILL);
      reap(0);
    }
    close_fd(in_);
    close_fd(out_fd_);
    close_fd(err_fd_);
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::vector<std::string>& argv() const { return argv_; }
  [[nodiscard]] const std::string& out() const { return out_; }
  [[nodiscard]] const std::string& err() const { return err_; }

  void signal(int sig) const {
    if (!status_) ::kill(pid_, sig);
  }
  // SIGKILL to every process of the group (the child and whatever it
  // started), while the leader is not yet reaped.
  void kill_group() const {
    if (!status_) ::kill(-pid_, SIGKILL);
  }
  bool running() {
    reap(WNOHANG);
    return !status_;
  }

  // Pumps the pipes until `done(stdout, stderr)` holds, the child exits or
  // `limit` passes; returns done's last value.
  bool wait_output(const std::function<bool(const std::string&, const std::string&)>& done,
                   std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (done(out_, err_)) return true;
      if (!running()) {
        drain();
        return done(out_, err_);
      }
      if (std::chrono::steady_clock::now() >= until) return false;
      pump(10);
    }
  }

  // Waits for the child to exit (killing its group after `limit`) and
  // returns its exit code and output.
  Result wait(std::chrono::milliseconds limit = 20s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (running()) {
      if (std::chrono::steady_clock::now() >= until) {
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        reap(0);
        drain();
        return {-1, out_, err_ + "\n[test_cli: killed after " + std::to_string(limit.count()) + " ms]"};
      }
      pump(10);
    }
    drain();
    return {*status_, out_, err_};
  }

 private:
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  void reap(int flags) {
    if (status_) return;
    int st = 0;
    pid_t r = 0;
    do {
      r = ::waitpid(pid_, &st, flags);
    } while (r < 0 && errno == EINTR);
    if (r != pid_) return;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  }

  // Reads what is available on `fd`; closes it at EOF.
  static void read_available(int& fd, std::string& to) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        to.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 || errno != EAGAIN) close_fd(fd);
      return;
    }
  }

  void write_available() {
    while (in_ >= 0 && in_off_ < input_.size()) {
      const ssize_t n = ::write(in_, input_.data() + in_off_, input_.size() - in_off_);
      if (n > 0) {
        in_off_ += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      close_fd(in_);  // EPIPE: the child does not read its input
      return;
    }
    close_fd(in_);  // all written: EOF for the child
  }

  void pump(int timeout_ms) {
    pollfd fds[3];
    nfds_t n = 0;
    if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
    if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
    if (in_ >= 0) fds[n++] = {in_, POLLOUT, 0};
    if (n == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      return;
    }
    if (::poll(fds, n, timeout_ms) <= 0) return;
    if (out_fd_ >= 0) read_available(out_fd_, out_);
    if (err_fd_ >= 0) read_available(err_fd_, err_);
    if (in_ >= 0) write_available();
  }

  // After the exit: what the child wrote is in the pipes already. A
  // grandchild may still hold them open: take what is there, do not wait.
  void drain() {
    if (out_fd_ >= 0) read_available(out_fd_, out_);
    if (err_fd_ >= 0) read_available(err_fd_, err_);
  }

  std::vector<std::string> argv_;
  std::string input_;
  std::size_t in_off_ = 0;
  pid_t pid_ = -1;
  int in_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  std::optional<int> status_;
};

inline std::vector<std::string> cli(std::vector<std::string> args) {
  args.insert(args.begin(), kCli);
  return args;
}

// Runs `jobring ARGS...` to completion.
inline Result jr(const std::vector<std::string>& args, const std::string& input = {},
                 std::chrono::milliseconds limit = 20s) {
  Proc p(cli(args), input);
  return p.wait(limit);
}

// Runs `jobring ARGS...` for every row, a few at a time (each start of the
// binary costs ~0.3 s under ASan, mostly in the kernel): results in order.
inline std::vector<Result> jr_batch(const std::vector<std::vector<std::string>>& rows,
                                    const std::vector<std::string>& inputs = {},
                                    std::chrono::milliseconds limit = 20s) {
  constexpr std::size_t kAtOnce = 4;
  std::vector<Result> results;
  for (std::size_t first = 0; first < rows.size(); first += kAtOnce) {
    std::vector<std::unique_ptr<Proc>> procs;
    for (std::size_t i = first; i < std::min(rows.size(), first + kAtOnce); ++i)
      procs.push_back(std::make_unique<Proc>(cli(rows[i]), i < inputs.size() ? inputs[i] : std::string{}));
    for (auto& p : procs) results.push_back(p->wait(limit));
  }
  return results;
}

// `jobring ARGS...` in the background.
inline std::unique_ptr<Proc> jr_bg(const std::vector<std::string>& args,
                                   const std::vector<std::string>& env = {}) {
  return std::make_unique<Proc>(cli(args), std::string{}, env);
}

// Checks the exit code of `jobring ARGS` (result is evaluated once; on
// failure the message shows the command line, stdout and stderr).
#define EXPECT_RUN(args, result, expected_code)                                 \
  do {                                                                          \
    const Result& run_result_ = (result);                                       \
    EXPECT_EQ(run_result_.code, expected_code) << show(cli(args), run_result_); \
  } while (0)
#define ASSERT_RUN(args, result, expected_code)                                 \
  do {                                                                          \
    const Result& run_result_ = (result);                                       \
    ASSERT_EQ(run_result_.code, expected_code) << show(cli(args), run_result_); \
  } while (0)

// ---------------------------------------------------------------------------
// A small strict JSON reader: the CLI's JSON must be valid JSON (no raw
// control characters, no duplicate keys), and the tests read values from it.
// ---------------------------------------------------------------------------

struct Json {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  std::int64_t number = 0;  // a number's integer part
  double real = 0;          // the number itself (top's rates have fractions)
  std::string string;
  std::vector<Json> items;        // array elements, or object values
  std::vector<std::string> keys;  // object keys, parallel to items

  [[nodiscard]] const Json* find(std::string_view key) const {
    if (kind != Kind::object) return nullptr;
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == key) return &items[i];
    return nullptr;
  }
  [[nodiscard]] bool has(std::string_view key) const { return find(key) != nullptr; }
  // A number field; -999999 (and a test failure) if missing or not a number.
  [[nodiscard]] std::int64_t num(std::string_view key) const {
    const Json* v = find(key);
    if (v == nullptr || v->kind != Kind::number) {
      ADD_FAILURE() << "JSON has no number field \"" << key << "\"";
      return -999999;
    }
    return v->number;
  }
  [[nodiscard]] std::string str(std::string_view key) const {
    const Json* v = find(key);
    if (v == nullptr || v->kind != Kind::string) {
      ADD_FAILURE() << "JSON has no string field \"" << key << "\"";
      return {};
    }
    return v->string;
  }
};

class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : s_(text) {}

  std::optional<Json> document() {
    Json v;
    ws();
    if (!value(v, 0)) return std::nullopt;
    ws();
    if (i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool lit(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  bool value(Json& v, int depth) {
    if (depth > 16 || i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') return object(v, depth);
    if (c == '[') return array(v, depth);
    if (c == '"') {
      v.kind = Json::Kind::string;
      return string(v.string);
    }
    if (c == 't' || c == 'f') {
      v.kind = Json::Kind::boolean;
      v.boolean = c == 't';
      return lit(c == 't' ? "true" : "false");
    }
    if (c == 'n') return lit("null");
    return number(v);
  }
  bool digits() {
    const std::size_t first = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > first;
  }
  bool number(Json& v) {  // JSON's grammar: -?int(.digits)?([eE][+-]?digits)?
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    const std::size_t int_start = i_;
    if (!digits() || (s_[int_start] == '0' && i_ - int_start > 1)) return false;
    const std::size_t int_end = i_;
    if (lit(".") && !digits()) return false;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) return false;
    }
    v.kind = Json::Kind::number;
    v.number = std::stoll(std::string(s_.substr(start, int_end - start)));
    v.real = std::stod(std::string(s_.substr(start, i_ - start)));
    return true;
  }
  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool hex4(std::uint32_t& cp) {
    if (i_ + 4 > s_.size()) return false;
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      cp <<= 4;
      if (h >= '0' && h <= '9')
        cp |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f')
        cp |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        cp |= static_cast<std::uint32_t>(h - 'A' + 10);
      else
        return false;
    }
    return true;
  }
  bool string(std::string& out) {
    ++i_;  // '"'
    while (i_ < s_.size()) {
      const char c = s_[i_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;  // raw control characters are not JSON
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t lo = 0;
            if (!lit("\\u") || !hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          put_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool array(Json& v, int depth) {
    v.kind = Json::Kind::array;
    ++i_;
    ws();
    if (lit("]")) return true;
    for (;;) {
      Json item;
      ws();
      if (!value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      ws();
      if (lit("]")) return true;
      if (!lit(",")) return false;
    }
  }
  bool object(Json& v, int depth) {
    v.kind = Json::Kind::object;
    ++i_;
    ws();
    if (lit("}")) return true;
    for (;;) {
      ws();
      std::string key;
      if (i_ >= s_.size() || s_[i_] != '"' || !string(key)) return false;
      if (v.has(key)) return false;  // duplicate key
      ws();
      if (!lit(":")) return false;
      ws();
      Json item;
      if (!value(item, depth + 1)) return false;
      v.keys.push_back(std::move(key));
      v.items.push_back(std::move(item));
      ws();
      if (lit("}")) return true;
      if (!lit(",")) return false;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

inline std::optional<Json> parse_json(std::string_view text) { return JsonReader(text).document(); }

inline std::optional<std::string> base64_decode(std::string_view text) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 4) {
    std::uint32_t n = 0;
    int pad = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      n <<= 6;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;
      const auto pos = kAlphabet.find(c);
      if (pos == std::string_view::npos) return std::nullopt;
      n |= static_cast<std::uint32_t>(pos);
    }
    out.push_back(static_cast<char>((n >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
  }
  return out;
}

// A string field of the JSON object `text` ("" and a test failure if none).
inline std::string jstr(const std::string& text, const char* key) {
  const auto j = JsonReader(text).document();
  if (!j) {
    ADD_FAILURE() << "not JSON: " << text;
    return {};
  }
  return j->str(key);
}

// The payload of a claim / peek JSON object, decoded per payload_encoding.
inline std::optional<std::string> payload_of(const Json& j) {
  const std::string enc = j.str("payload_encoding");
  if (enc == "utf8") return j.str("payload");
  if (enc == "base64") return base64_decode(j.str("payload"));
  ADD_FAILURE() << "unknown payload_encoding '" << enc << "'";
  return std::nullopt;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs every row (a few at a time, as jr_batch) and checks that each is a
// usage error: exit 2, nothing on stdout, and stderr containing err_has[i].
inline void expect_usage_errors(const std::vector<std::vector<std::string>>& rows,
                                const std::vector<std::string>& err_has,
                                std::chrono::milliseconds limit = 20s) {
  ASSERT_EQ(rows.size(), err_has.size());
  const auto results = jr_batch(rows, {}, limit);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& args = rows[i];
    const Result& r = results[i];
    EXPECT_RUN(args, r, 2);
    EXPECT_EQ(r.out, "") << show(cli(args), r);
    EXPECT_TRUE(contains(r.err, err_has[i]))
        << "stderr should contain '" << err_has[i] << "'" << show(cli(args), r);
  }
}

inline bool is_decimal_line(const std::string& s) {
  return s.size() >= 2 && s.back() == '\n' &&
         std::all_of(s.begin(), s.end() - 1, [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace jobring::test
