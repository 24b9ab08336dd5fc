#include "worker_confinement.hpp"

#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

namespace rgpu {

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("confining the worker: " + what); }
[[noreturn]] void fail(const std::string& step, int error) { fail(step + ": " + std::strerror(error)); }

void check_single_threaded() {
  std::error_code error;
  size_t threads = 0;
  for (std::filesystem::directory_iterator it("/proc/self/task", error), end; !error && it != end;
       it.increment(error))
    ++threads;
  if (error) fail("listing /proc/self/task", error.value());
  if (threads != 1)
    fail(std::to_string(threads) + " threads exist; the restrictions would miss all but the calling one");
}

struct Capabilities {
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

  bool any_held() const {
    for (const auto& d : data)
      if (d.effective || d.permitted || d.inheritable) return true;
    return false;
  }
  bool effective(int cap) const { return data[cap / 32].effective & (1u << (cap % 32)); }
};

Capabilities get_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  Capabilities caps;
  if (syscall(SYS_capget, &header, caps.data) != 0) fail("capget", errno);
  return caps;
}

int last_capability() {
  std::ifstream file("/proc/sys/kernel/cap_last_cap");
  int last = -1;
  if (!(file >> last) || last < 0) fail("cannot read /proc/sys/kernel/cap_last_cap");
  return last;
}

void drop_capabilities(Confinement& confinement) {
  const Capabilities before = get_capabilities();
  const bool can_drop_bounding = before.effective(CAP_SETPCAP);

  int kept = 0, dropped = 0;
  for (int cap = 0, last = last_capability(); cap <= last; ++cap) {
    const int in_set = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (in_set < 0) fail("PR_CAPBSET_READ " + std::to_string(cap), errno);
    if (!in_set) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) {
      ++dropped;
    } else if (errno == EPERM && !can_drop_bounding) {
      ++kept;
    } else {
      fail("PR_CAPBSET_DROP " + std::to_string(cap), errno);
    }
  }
  if (kept)
    confinement.applied.push_back("bounding set kept (" + std::to_string(kept) +
                                  " capabilities; no CAP_SETPCAP to drop them, no_new_privs keeps exec from granting them)");
  else
    confinement.applied.push_back(dropped ? "bounding set emptied" : "bounding set already empty");

  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) fail("PR_CAP_AMBIENT_CLEAR_ALL", errno);

  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  Capabilities none;
  if (syscall(SYS_capset, &header, none.data) != 0) fail("capset", errno);
  if (get_capabilities().any_held())
    fail("capabilities still held after capset");
  confinement.applied.push_back(before.any_held() ? "capabilities dropped" : "no capabilities held");
}

// A deny-list, not an allow-list: the NVIDIA driver's system calls (ioctls on /dev/nvidia*, mmap
// flags, its threads) are undocumented and change from one driver version to the next, so a list of
// what to allow could not be kept honest. These are calls a GPU worker never makes and an attacker
// inside one would want: reading or steering other processes, loading kernel code, changing the
// machine, reaching kernel attack surface, leaving its namespaces. io_uring stays allowed: the
// worker's event loop uses it, and none of its operations does what this list refuses.
struct DeniedSyscall {
  int nr;
  const char* name;
};
#define DENY(name) DeniedSyscall{SCMP_SYS(name), #name}
constexpr DeniedSyscall denied_syscalls[] = {
    DENY(ptrace), DENY(process_vm_readv), DENY(process_vm_writev), DENY(pidfd_getfd),
    DENY(kexec_load), DENY(kexec_file_load),
    DENY(init_module), DENY(finit_module), DENY(delete_module),
    DENY(mount), DENY(umount2), DENY(pivot_root), DENY(chroot),
    DENY(fsopen), DENY(fsconfig), DENY(fsmount), DENY(fspick), DENY(move_mount), DENY(open_tree), DENY(mount_setattr),
    DENY(swapon), DENY(swapoff), DENY(reboot), DENY(acct),
    DENY(quotactl), DENY(quotactl_fd),
    DENY(settimeofday), DENY(clock_settime), DENY(adjtimex), DENY(clock_adjtime),
    DENY(syslog),
    DENY(bpf), DENY(perf_event_open), DENY(userfaultfd),
    DENY(keyctl), DENY(add_key), DENY(request_key),
    DENY(setns), DENY(unshare),
    DENY(open_by_handle_at), DENY(name_to_handle_at),
    // Signals reach other processes of the same user (the main server process, other tenants'
    // workers) through these; kill and tgkill are allowed for the worker itself only (below).
    DENY(tkill), DENY(pidfd_open), DENY(pidfd_send_signal), DENY(process_madvise), DENY(kcmp),
};
#undef DENY

// clone() can make namespaces just as unshare() can; its flags are its first argument except on s390.
#if defined(__s390__)
constexpr unsigned clone_flags_arg = 1;
#else
constexpr unsigned clone_flags_arg = 0;
#endif
constexpr uint64_t clone_namespace_flags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                              CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};

void install_seccomp_filter(Confinement& confinement) {
  std::unique_ptr<void, decltype(&seccomp_release)> ctx(seccomp_init(SCMP_ACT_ALLOW), &seccomp_release);
  if (!ctx) fail("seccomp_init", ENOMEM);
  auto check = [](int rc, const std::string& step) {
    if (rc < 0) fail(step, -rc);
  };
  // The rules are for the native architecture's system call numbers; a call made as another one
  // (i386 through int 0x80, x32) would slip past them.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "seccomp bad-arch action");
  // By default the kernel turns on speculative-store-bypass mitigation for every process with a
  // seccomp filter, which slows memory-bound code (the staging copies) by several per cent. A
  // worker runs only RGPU's code, never a tenant's, so there is no code of an attacker in it to
  // mount such an attack from.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_SSB, 1), "seccomp speculation attribute");
  // A binary tree of rules rather than a list: fewer comparisons for each system call.
  check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2), "seccomp optimization attribute");

  for (const auto& call : denied_syscalls)
    check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), call.nr, 0), std::string("seccomp rule for ") + call.name);
  for (uint64_t flag : clone_namespace_flags)
    check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                           SCMP_CMP64(clone_flags_arg, SCMP_CMP_MASKED_EQ, flag, flag)),
          "seccomp rule for clone");
  // clone3 passes its flags in memory, out of the filter's reach. ENOSYS makes the C library fall
  // back to clone (whose flags the rules above see) for threads and processes.
  check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "seccomp rule for clone3");
  // Signals to this process only: kill(0) and kill(-1) would reach the main process too.
  const auto self = static_cast<uint64_t>(::getpid());
  for (int call : {SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo)})
    check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), call, 1, SCMP_A0_32(SCMP_CMP_NE, self)),
          "seccomp rule for signals");
  // personality(0xffffffff) only reads the persona; changing it (READ_IMPLIES_EXEC, ...) is refused.
  check(seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                         SCMP_A0_32(SCMP_CMP_NE, 0xffffffffu)),
        "seccomp rule for personality");

  check(seccomp_load(ctx.get()), "seccomp_load");
  confinement.applied.push_back("seccomp filter (" + std::to_string(std::size(denied_syscalls)) +
                                " system calls refused; namespace flags of clone, clone3, personality changes and "
                                "signals to other processes refused; foreign architectures killed)");
}

}  // namespace

Confinement confine_worker() {
  Confinement confinement;
  check_single_threaded();

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS", errno);
  confinement.applied.push_back("no_new_privs");

  // Workers of different tenants run as the same user: this keeps them (and any other process of
  // that user) from ptrace-ing each other or reading each other's memory through /proc.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail("PR_SET_DUMPABLE", errno);
  confinement.applied.push_back("not dumpable");

  drop_capabilities(confinement);

  // A core dump would write a tenant's data to disk. The other limits stay: the CUDA driver needs
  // a large address space, many threads and many descriptors.
  const rlimit no_core{0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) fail("setrlimit(RLIMIT_CORE)", errno);
  confinement.applied.push_back("RLIMIT_CORE=0");

  install_seccomp_filter(confinement);
  return confinement;
}

}  // namespace rgpu
