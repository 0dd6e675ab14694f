// Acting as an ordinary user in a forked child of a root test (issue 14 item
// 2, the access model): tests that need an application user, a janitor user
// and a shared group use throwaway numeric ids that no /etc/passwd or
// /etc/group entry needs to name, so nothing on the host is created or
// changed. Skipped (GTEST_SKIP) when the test does not run as root.
#pragma once

#include <grp.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include <vector>

namespace jobring::test {

// A user for a child to become: its uid, primary gid and supplementary groups.
struct Identity {
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

// Ids above the system and login ranges, named by nothing on a CI host.
inline constexpr gid_t kSharedGid = 64100;  // the group a queue is shared through
inline constexpr uid_t kAppUid = 64101;     // the application's user (creates the queue)
inline constexpr uid_t kPeerUid = 64102;    // another user, in or out of the group
inline constexpr uid_t kJanitorUid = 64103;

// The users the access tests play (tests/ring/test_group.cpp,
// tests/cli/test_cli_access.cpp, tests/daemon/test_janitor_access.cpp).
inline const Identity kApp{kAppUid, kAppUid, {kAppUid, kSharedGid}};  // an application user in the group
inline const Identity kAppAlone{kAppUid, kAppUid, {kAppUid}};         // the same user, not in it
inline const Identity kPeer{kPeerUid, kPeerUid, {kPeerUid, kSharedGid}};
inline const Identity kStranger{kPeerUid, kPeerUid, {kPeerUid}};
inline const Identity kJanitorInGroup{kJanitorUid, kJanitorUid, {kJanitorUid, kSharedGid}};
inline const Identity kJanitorOutside{kJanitorUid, kJanitorUid, {kJanitorUid}};

// Becomes `who` (groups first, then gid, then uid, all three of each set),
// then makes the process dumpable again, as a process started by that user
// is: after a uid change the kernel makes /proc/self/fd root's, and a queue
// handle reopens its segment through /proc/self/fd (its liveness token) and
// create() links the new segment through it. False if any step failed.
inline bool become(const Identity& who) {
  if (::setgroups(who.groups.size(), who.groups.data()) != 0) return false;
  if (::setresgid(who.gid, who.gid, who.gid) != 0 || ::setresuid(who.uid, who.uid, who.uid) != 0)
    return false;
  if (::prctl(PR_SET_DUMPABLE, 1) != 0) return false;
  return ::geteuid() == who.uid && ::getegid() == who.gid;
}

#define JOBRING_SKIP_UNLESS_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as other users (setresuid, setgroups)"

}  // namespace jobring::test
