// What `cmake --install` puts on a host (issue 14 items 1 and 8): the
// janitor's unit names the config file that is installed, with the user that
// the installed sysusers.d file makes, and systemd-analyze accepts it; the
// pkg-config file compiles and links a program; every binary prints
// project(VERSION); the man pages and the bash completion are installed.
//
// Each test installs this build tree into its own temporary DESTDIR
// (`DESTDIR=D cmake --install BUILD`): nothing is written outside it. The
// paths inside the installed files are the configured ones (the prefix,
// GNUInstallDirs' sysconfdir), so a test finds them under D.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/run_command.hpp"
#include "support/temp_dir.hpp"
#include "support/test_support.hpp"

namespace jobring {
namespace {

using namespace std::chrono_literals;
using test::run_command;
using test::run_shell;
using test::TempDir;
using test::Watchdog;

#if defined(JOBRING_CMAKE_COMMAND) && defined(JOBRING_INSTALL_PREFIX)
constexpr bool kHaveInstall = true;
constexpr const char* kCmake = JOBRING_CMAKE_COMMAND;
constexpr const char* kBuildDir = JOBRING_BINARY_DIR;
constexpr const char* kCxx = JOBRING_CXX;
constexpr const char* kCc = JOBRING_CC;
constexpr const char* kVersion = JOBRING_VERSION;
constexpr const char* kPrefix = JOBRING_INSTALL_PREFIX;
constexpr const char* kSysconfdir = JOBRING_INSTALL_FULL_SYSCONFDIR;
constexpr const char* kLibdir = JOBRING_INSTALL_FULL_LIBDIR;
constexpr const char* kBindir = JOBRING_INSTALL_FULL_BINDIR;
constexpr const char* kSbindir = JOBRING_INSTALL_FULL_SBINDIR;
constexpr const char* kUnitDir = JOBRING_SYSTEMD_UNIT_DIR;
constexpr const char* kSysusersDir = JOBRING_SYSUSERS_DIR;
constexpr const char* kMandir = JOBRING_INSTALL_FULL_MANDIR;
constexpr const char* kDatadir = JOBRING_INSTALL_FULL_DATADIR;
constexpr bool kManPages = JOBRING_MAN_PAGES;
#else
constexpr bool kHaveInstall = false;
constexpr const char *kCmake = "", *kBuildDir = "", *kCxx = "", *kCc = "", *kVersion = "", *kPrefix = "",
                     *kSysconfdir = "", *kLibdir = "", *kBindir = "", *kSbindir = "", *kUnitDir = "",
                     *kSysusersDir = "", *kMandir = "", *kDatadir = "";
constexpr bool kManPages = false;
#endif

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// This build installed into a fresh DESTDIR.
class Install : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kHaveInstall) GTEST_SKIP() << "built without the janitor and the CLI: nothing to install";
    const test::CommandResult r = run_command({kCmake, "--install", kBuildDir}, {{"DESTDIR", dest.str()}});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  // An installed path (as the installed files name it) under DESTDIR.
  [[nodiscard]] std::string staged(const std::string& path) const { return dest.str() + path; }

  Watchdog dog{300s, "Install"};
  TempDir dest{"destdir"};
};

// The unit's ExecStart= line, split at spaces.
std::vector<std::string> exec_start(const std::string& unit) {
  std::istringstream in(unit);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("ExecStart=", 0) != 0) continue;
    std::vector<std::string> words;
    std::istringstream w(line.substr(10));
    for (std::string word; w >> word;) words.push_back(word);
    return words;
  }
  return {};
}

// Issue 14 item 1: the unit ran `--config /etc/jobring/janitor.conf` while
// the file was installed to ${prefix}/etc/jobring; a missing explicit config
// is fatal, so the installed unit restarted for ever. Now both are the full
// sysconfdir, and the config the unit names is the file that was installed.
TEST_F(Install, Item1_UnitsConfigIsTheInstalledConfigFile) {
  const std::string unit_path = staged(std::string(kUnitDir) + "/jobring-janitor.service");
  const std::string unit = read_file(unit_path);
  ASSERT_FALSE(unit.empty()) << "no unit at " << unit_path;
  const std::vector<std::string> cmd = exec_start(unit);
  ASSERT_EQ(cmd.size(), 3u) << unit;
  EXPECT_EQ(cmd[0], std::string(kSbindir) + "/jobring-janitor");
  EXPECT_EQ(::access(staged(cmd[0]).c_str(), X_OK), 0) << cmd[0] << " is not installed";
  EXPECT_EQ(cmd[1], "--config");
  EXPECT_EQ(cmd[2], std::string(kSysconfdir) + "/jobring/janitor.conf");
  EXPECT_TRUE(std::filesystem::is_regular_file(staged(cmd[2])))
      << "the unit runs --config " << cmd[2] << ", which was not installed";
  // And the installed janitor accepts that file (it is all comments).
  const test::CommandResult check = run_command({staged(cmd[0]), "--config", staged(cmd[2]), "--help"});
  EXPECT_EQ(check.status, 0) << check.output;
}

// Issue 14 item 1: the unit runs as User=jobring/Group=jobring, which had to
// be made by hand; the sysusers.d file makes them.
TEST_F(Install, Item1_SysusersFileMakesTheUnitsUser) {
  const std::string unit = read_file(staged(std::string(kUnitDir) + "/jobring-janitor.service"));
  EXPECT_TRUE(contains(unit, "\nUser=jobring\n")) << unit;
  EXPECT_TRUE(contains(unit, "\nGroup=jobring\n")) << unit;
  const std::string path = staged(std::string(kSysusersDir) + "/jobring.conf");
  EXPECT_EQ(kSysusersDir, std::string(kPrefix) + "/lib/sysusers.d");
  const std::string conf = read_file(path);
  ASSERT_FALSE(conf.empty()) << "no sysusers.d file at " << path;
  bool user_line = false;
  std::istringstream in(conf);
  for (std::string line; std::getline(in, line);) {
    std::istringstream w(line);
    std::string type, name;
    w >> type >> name;
    if (type == "u" && name == "jobring") user_line = true;  // "u" makes the group of the same name too
  }
  EXPECT_TRUE(user_line) << conf;
  // systemd-sysusers parses it (--dry-run: it creates nothing).
  const std::string sysusers = test::find_tool("systemd-sysusers");
  if (sysusers.empty()) GTEST_SKIP() << "systemd-sysusers is not installed; the file was not parsed";
  const test::CommandResult r = run_command({sysusers, "--dry-run", "--root", dest.str(), path});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "jobring.conf:")) << r.output;  // no complaint about a line
}

// Issue 14 item 1: systemd-analyze verify accepts the installed unit (as the
// build tree's in JanitorUnit.SystemdAnalyzeVerifyPasses). verify insists
// that ExecStart='s binary exists, and under --root it would look for every
// unit and command the service depends on (sysinit.target, /bin/kill) in
// DESTDIR too; so the installed file is verified as it is, except that
// DESTDIR is put before its ExecStart= path, which is where that binary is.
// scripts/package-test verifies the unit installed by the Debian package
// as it is.
TEST_F(Install, Item1_SystemdAnalyzeVerifiesTheInstalledUnit) {
  const std::string tool = test::find_tool("systemd-analyze");
  if (tool.empty()) GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
  std::string unit = read_file(staged(std::string(kUnitDir) + "/jobring-janitor.service"));
  const std::string exec = "\nExecStart=" + std::string(kSbindir) + "/jobring-janitor ";
  const auto at = unit.find(exec);
  ASSERT_NE(at, std::string::npos) << unit;
  unit.insert(at + 11, dest.str());  // after "\nExecStart="
  TempDir dir("unit");
  std::ofstream(dir.file("jobring-janitor.service")) << unit;
  const test::CommandResult r = run_command({tool, "verify", dir.file("jobring-janitor.service")});
  EXPECT_EQ(r.status, 0) << r.output;
  // Any complaint about our unit file (it may warn about unrelated system units).
  EXPECT_FALSE(contains(r.output, "jobring-janitor.service:")) << r.output;
}

// Issue 14 item 8: `pkg-config --cflags --libs jobring` against the install
// compiles and links a program that uses the library, and it runs.
TEST_F(Install, Item8_PkgConfigCompilesAndLinksAProgram) {
  const std::string pkg_config = test::find_tool("pkg-config");
  if (pkg_config.empty()) GTEST_SKIP() << "pkg-config is not installed (Debian package pkg-config)";
  // A sanitizer build installs an instrumented library, which a plain
  // program cannot link; the default stage checks the real thing.
  if (test::kAddressSanitizer || test::kThreadSanitizer)
    GTEST_SKIP() << "the installed library is built with a sanitizer; the default build checks pkg-config";
  const std::string pc_dir = staged(std::string(kLibdir) + "/pkgconfig");
  ASSERT_TRUE(std::filesystem::is_regular_file(pc_dir + "/jobring.pc")) << "no jobring.pc in " << pc_dir;
  const std::vector<std::pair<std::string, std::string>> env{{"PKG_CONFIG_PATH", pc_dir},
                                                             {"PKG_CONFIG_LIBDIR", pc_dir}};
  const test::CommandResult version = run_command({pkg_config, "--modversion", "jobring"}, env);
  EXPECT_EQ(version.status, 0) << version.output;
  EXPECT_EQ(version.output, std::string(kVersion) + "\n");
  const test::CommandResult flags = run_command({pkg_config, "--cflags", "--libs", "jobring"}, env);
  ASSERT_EQ(flags.status, 0) << flags.output;
  EXPECT_TRUE(contains(flags.output, "-I" + dest.str())) << flags.output;

  {
    std::ofstream src(dest.file("prog.cpp"));
    src << "#include <jobring/duration.hpp>\n#include <jobring/queue.hpp>\n#include <cstdio>\n"
           "int main() {\n"
           "  std::printf(\"%s %s\\n\", jobring::segment_path(\"pc-test\").c_str(),\n"
           "              jobring::format_duration(std::chrono::milliseconds(90000)).c_str());\n"
           "}\n";
  }
  const std::string prog = dest.file("prog");
  const test::CommandResult build =
      run_shell(std::string(kCxx) + " -std=c++20 -o '" + prog + "' '" + dest.file("prog.cpp") + "' $('" +
                    pkg_config + "' --cflags --libs jobring)",
                env);
  ASSERT_EQ(build.status, 0) << build.output;
  // -ljobring linked the shared library, which is not where the loader looks.
  const test::CommandResult ran = run_command({prog}, {{"LD_LIBRARY_PATH", staged(kLibdir)}});
  EXPECT_EQ(ran.status, 0) << ran.output;
  EXPECT_TRUE(contains(ran.output, "jobring.pc-test")) << ran.output;
}

// Issue 17: the C API is installed — libjobring.so.VERSION with its SONAME
// and development links, jobring.h and the generated version.h — and a C99
// program built with pkg-config's flags runs a push, claim and ack on it.
TEST_F(Install, Issue17_CProgramBuiltWithPkgConfigRunsOnTheSharedLibrary) {
  const std::string libdir = staged(kLibdir);
  const std::string major = std::string(kVersion).substr(0, std::string(kVersion).find('.'));
  EXPECT_TRUE(std::filesystem::is_regular_file(libdir + "/libjobring.so." + kVersion));
  EXPECT_EQ(std::filesystem::read_symlink(libdir + "/libjobring.so." + major).string(),
            std::string("libjobring.so.") + kVersion);
  EXPECT_EQ(std::filesystem::read_symlink(libdir + "/libjobring.so").string(), "libjobring.so." + major);
  EXPECT_TRUE(std::filesystem::is_regular_file(libdir + "/libjobring.a"));
  const std::string includedir = staged(std::string(kPrefix) + "/include/jobring");
  EXPECT_TRUE(std::filesystem::is_regular_file(includedir + "/jobring.h"));
  EXPECT_TRUE(contains(read_file(includedir + "/version.h"), std::string("\"") + kVersion + "\""));

  const std::string pkg_config = test::find_tool("pkg-config");
  if (pkg_config.empty()) GTEST_SKIP() << "pkg-config is not installed (Debian package pkg-config)";
  if (test::kAddressSanitizer || test::kThreadSanitizer)
    GTEST_SKIP() << "the installed library is built with a sanitizer; the default build checks it";
  const std::string pc_dir = libdir + "/pkgconfig";
  const std::vector<std::pair<std::string, std::string>> env{{"PKG_CONFIG_PATH", pc_dir},
                                                             {"PKG_CONFIG_LIBDIR", pc_dir}};
  {
    std::ofstream src(dest.file("prog.c"));
    src << "#include <jobring/jobring.h>\n#include <stdio.h>\n#include <unistd.h>\n"
           "int main(void) {\n"
           "  char name[64]; jobring_queue* q; jobring_job* job; size_t len; const char* p;\n"
           "  snprintf(name, sizeof name, \"install-c.%ld\", (long)getpid());\n"
           "  if (jobring_create(name, NULL, &q) != JOBRING_OK) { puts(jobring_last_error()); return 1; }\n"
           "  jobring_job_new(&job);\n"
           "  if (jobring_push(q, \"hi\", 2, NULL, NULL, NULL) != JOBRING_OK) return 2;\n"
           "  if (jobring_claim(q, job, NULL) != JOBRING_OK) return 3;\n"
           "  p = jobring_job_payload(job, &len);\n"
           "  if (len != 2 || p[0] != 'h' || jobring_ack(q, job) != JOBRING_OK) return 4;\n"
           "  jobring_job_free(job); jobring_close(q); jobring_remove(name);\n"
           "  printf(\"%s %s\\n\", jobring_version(), JOBRING_VERSION_STRING);\n"
           "  return 0;\n"
           "}\n";
  }
  const std::string prog = dest.file("cprog");
  const test::CommandResult build =
      run_shell(std::string(kCc) + " -std=c99 -Wall -Wextra -Werror -pedantic -o '" + prog + "' '" +
                    dest.file("prog.c") + "' $('" + pkg_config + "' --cflags --libs jobring)",
                env);
  ASSERT_EQ(build.status, 0) << build.output;
  const test::CommandResult ran = run_command({prog}, {{"LD_LIBRARY_PATH", libdir}});
  EXPECT_EQ(ran.status, 0) << ran.output;
  EXPECT_EQ(ran.output, std::string(kVersion) + " " + kVersion + "\n");
}

// Issue 17: find_package(jobring) gives jobring::jobring_shared, which a C
// project links.
TEST_F(Install, Issue17_CMakePackageGivesTheSharedLibraryToACProject) {
  if (test::kAddressSanitizer || test::kThreadSanitizer)
    GTEST_SKIP() << "the installed library is built with a sanitizer; the default build checks it";
  TempDir project("cmake-consumer");
  std::ofstream(project.file("CMakeLists.txt"))
      << "cmake_minimum_required(VERSION 3.25)\nproject(consumer LANGUAGES C)\n"
         "find_package(jobring 0.1 REQUIRED)\nadd_executable(consumer main.c)\n"
         "target_link_libraries(consumer PRIVATE jobring::jobring_shared)\n";
  std::ofstream(project.file("main.c")) << "#include <jobring/jobring.h>\n#include <stdio.h>\n"
                                           "int main(void) { puts(jobring_version()); return 0; }\n";
  const std::string build_dir = project.file("build");
  const test::CommandResult configure =
      run_command({kCmake, "-S", project.str(), "-B", build_dir, "-DCMAKE_C_COMPILER=" + std::string(kCc),
                   "-DCMAKE_PREFIX_PATH=" + staged(kPrefix)});
  ASSERT_EQ(configure.status, 0) << configure.output;
  const test::CommandResult build = run_command({kCmake, "--build", build_dir});
  ASSERT_EQ(build.status, 0) << build.output;
  // The imported target's RPATH-free link: the loader needs the staged libdir.
  const test::CommandResult ran =
      run_command({build_dir + "/consumer"}, {{"LD_LIBRARY_PATH", staged(kLibdir)}});
  EXPECT_EQ(ran.status, 0) << ran.output;
  EXPECT_EQ(ran.output, std::string(kVersion) + "\n");
}

// Issue 14 item 8: the version is project(VERSION), in one place; both
// installed binaries print it.
TEST_F(Install, Item8_EveryBinaryPrintsTheProjectVersion) {
  const test::CommandResult cli = run_command({staged(std::string(kBindir) + "/jobring"), "--version"});
  EXPECT_EQ(cli.status, 0) << cli.output;
  EXPECT_EQ(cli.output, "jobring " + std::string(kVersion) + "\n");
  const test::CommandResult janitor =
      run_command({staged(std::string(kSbindir) + "/jobring-janitor"), "--version"});
  EXPECT_EQ(janitor.status, 0) << janitor.output;
  EXPECT_EQ(janitor.output, "jobring-janitor " + std::string(kVersion) + "\n");
}

// Issue 14 item 8: the CLI's bash completion, where bash-completion looks
// for it; and (when help2man made them) gzipped man pages of both binaries,
// whose NAME section `man -l` shows.
TEST_F(Install, Item8_ManPagesAndBashCompletionAreInstalled) {
  const std::string completion = staged(std::string(kDatadir) + "/bash-completion/completions/jobring");
  EXPECT_TRUE(contains(read_file(completion), "complete -F _jobring jobring")) << completion;
  if (!kManPages) GTEST_SKIP() << "help2man is not installed (or a sanitizer build): no man pages were made";
  for (const std::string name : {"jobring", "jobring-janitor"}) {
    const std::string page = staged(std::string(kMandir) + "/man1/" + name + ".1.gz");
    ASSERT_TRUE(std::filesystem::exists(page)) << page;
    const test::CommandResult roff = run_shell("zcat '" + page + "'");
    EXPECT_EQ(roff.status, 0) << roff.output;
    EXPECT_TRUE(contains(roff.output, ".SH NAME\n" + name + " \\- ")) << roff.output.substr(0, 400);
    EXPECT_TRUE(contains(roff.output, name + " " + kVersion)) << roff.output.substr(0, 400);
    const std::string man = test::find_tool("man");
    if (man.empty()) continue;
    const test::CommandResult shown = run_shell("MANWIDTH=80 '" + man + "' -l '" + page + "' 2>&1");
    EXPECT_EQ(shown.status, 0) << shown.output;
    EXPECT_TRUE(contains(shown.output, "NAME\n       " + name + " ")) << shown.output.substr(0, 400);
  }
  const test::CommandResult details =
      run_shell("zcat '" + staged(std::string(kMandir) + "/man1/jobring.1.gz") + "'");
  EXPECT_TRUE(contains(details.output, ".SS \"jobring top\""))
      << "every subcommand's --help is in jobring(1)";
}

}  // namespace
}  // namespace jobring
