// What a server worker process gives up before it reads anything a client sent.
#pragma once

#include <string>
#include <vector>

namespace rgpu {

struct Confinement {
  std::vector<std::string> applied;  // for the worker's debug log
};

// Applies the worker's restrictions to the calling process; throws std::runtime_error naming the
// step that failed. Call it before any other thread exists (it throws if one does): no_new_privs,
// capabilities and the seccomp filter hold for the calling thread and the threads it starts later.
//
// - no_new_privs, not dumpable (no other process of the same user can ptrace it or read its
//   memory through /proc), no core dumps;
// - no capabilities: effective, permitted, inheritable and ambient cleared; the bounding set is
//   emptied when the process has CAP_SETPCAP, and otherwise left as it is (no_new_privs already
//   keeps an exec from granting what it holds); throws if a held capability could not be dropped;
// - a seccomp deny-list (see the .cpp) whose refused system calls fail with EPERM; a system call of
//   a foreign architecture (i386 through int 0x80, x32) kills the process.
//
// A second call succeeds and takes nothing further away (it stacks an identical seccomp filter).
Confinement confine_worker();

}  // namespace rgpu
