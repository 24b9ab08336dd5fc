// confine_worker: each check runs in a forked child that confines itself and reports through its exit
// status (0: passed; another number: which step of the check failed, also written to stderr).
#include <gtest/gtest.h>
#include <liburing.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>

#include "server/worker_confinement.hpp"

namespace rgpu {
namespace {

constexpr int kConfineThrew = 100;

int status_of(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `check` in a child after confine_worker(); returns the child's exit status, or 128 + the
// signal that ended it.
int confined(const std::function<int()>& check) {
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      confine_worker();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      _exit(kConfineThrew);
    }
    _exit(check());
  }
  return status_of(pid);
}

int failed(int code, const char* what) {
  std::fprintf(stderr, "step %d failed: %s (last errno: %s)\n", code, what, std::strerror(errno));
  return code;
}

// The call must fail with `expected` errno.
bool refused(long result, int expected = EPERM) { return result == -1 && errno == expected; }

TEST(WorkerConfinement, SetsNoNewPrivsAndNotDumpable) {
  EXPECT_EQ(confined([] {
              if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return failed(1, "no_new_privs is not 1");
              if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return failed(2, "dumpable is not 0");
              return 0;
            }),
            0);
}

// The seccomp filter leaves speculation controls as they were: the kernel's default for filtered
// processes (store bypass disabled) would slow the worker's copies, and a worker runs no code of
// a tenant's to attack from.
TEST(WorkerConfinement, LeavesSpeculationControlsAsTheyWere) {
  const int before = prctl(PR_GET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, 0, 0, 0);
  EXPECT_EQ(confined([before] {
              if (prctl(PR_GET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, 0, 0, 0) != before)
                return failed(1, "the store bypass control changed");
              return 0;
            }),
            0);
}

// Another process of the same user (the main server process, another tenant's worker) cannot be
// signalled; the worker itself can (raise, abort, pthread_kill).
TEST(WorkerConfinement, SignalsReachOnlyTheWorkerItself) {
  EXPECT_EQ(confined([] {
              if (!refused(kill(getppid(), 0))) return failed(1, "kill of the parent not refused");
              if (!refused(kill(0, 0))) return failed(2, "kill of the process group not refused");
              if (!refused(kill(-1, 0))) return failed(3, "kill of every process not refused");
              if (!refused(syscall(SYS_tgkill, getppid(), getppid(), 0))) return failed(4, "tgkill of the parent");
              if (!refused(syscall(SYS_pidfd_open, getppid(), 0))) return failed(5, "pidfd_open not refused");
              if (kill(getpid(), 0) != 0) return failed(6, "kill of itself refused");
              if (syscall(SYS_tgkill, getpid(), gettid(), 0) != 0) return failed(7, "tgkill of itself refused");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, HoldsNoCapabilities) {
  EXPECT_EQ(confined([] {
              __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
              __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
              if (syscall(SYS_capget, &header, data) != 0) return failed(1, "capget");
              for (const auto& d : data)
                if (d.effective || d.permitted || d.inheritable) return failed(2, "a capability is held");
              for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
                if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1)
                  return failed(3, "an ambient capability is set");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, MakesNoCoreDumps) {
  EXPECT_EQ(confined([] {
              rlimit core{};
              if (getrlimit(RLIMIT_CORE, &core) != 0) return failed(1, "getrlimit");
              if (core.rlim_cur != 0 || core.rlim_max != 0) return failed(2, "RLIMIT_CORE is not 0");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, RefusesPtraceAndReadingProcessMemory) {
  EXPECT_EQ(confined([] {
              if (!refused(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr))) return failed(1, "PTRACE_TRACEME not refused");
              char source[16] = "secret", target[16] = {};
              iovec local{target, sizeof target}, remote{source, sizeof source};
              if (!refused(process_vm_readv(getpid(), &local, 1, &remote, 1, 0)))
                return failed(2, "process_vm_readv not refused");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, RefusesNewNamespaces) {
  EXPECT_EQ(confined([] {
              if (!refused(unshare(CLONE_NEWUSER))) return failed(1, "unshare(CLONE_NEWUSER) not refused");
              const long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
              if (pid == 0) _exit(0);
              if (pid > 0) {
                status_of(static_cast<pid_t>(pid));
                return failed(2, "clone(CLONE_NEWUSER) not refused");
              }
              if (errno != EPERM) return failed(3, "clone(CLONE_NEWUSER) failed without EPERM");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, AllowsOnlyQueryingThePersonality) {
  EXPECT_EQ(confined([] {
              const int persona = personality(0xffffffff);
              if (persona == -1) return failed(1, "personality query");
              if (!refused(personality(static_cast<unsigned long>(persona) | READ_IMPLIES_EXEC)))
                return failed(2, "personality change not refused");
              return 0;
            }),
            0);
}

#if defined(__x86_64__)
// A system call made as another architecture must not slip past the filter: the process is killed.
long i386_getpid() {
  long result;
  asm volatile("int $0x80" : "=a"(result) : "0"(20L) : "r8", "r9", "r10", "r11", "memory");
  return result;
}

TEST(WorkerConfinement, KillsI386SystemCalls) {
  const pid_t probe = fork();
  if (probe == 0) _exit(i386_getpid() == getpid() ? 0 : 1);
  if (status_of(probe) != 0) GTEST_SKIP() << "this kernel does not run i386 system calls";
  EXPECT_EQ(confined([] {
              i386_getpid();
              return failed(1, "an i386 system call returned");
            }),
            128 + SIGSYS);
}

TEST(WorkerConfinement, KillsX32SystemCalls) {
  EXPECT_EQ(confined([] {
              syscall(0x40000000 /* __X32_SYSCALL_BIT */ | SYS_getpid);
              return failed(1, "an x32 system call returned");
            }),
            128 + SIGSYS);
}
#endif

TEST(WorkerConfinement, ThreadsStillStart) {
  EXPECT_EQ(confined([] {
              int value = 0;
              try {
                std::thread([&] { value = 42; }).join();
              } catch (const std::exception& e) {
                return failed(1, e.what());
              }
              return value == 42 ? 0 : failed(2, "the thread did not run");
            }),
            0);
}

TEST(WorkerConfinement, MmapStillWorks) {
  EXPECT_EQ(confined([] {
              const size_t size = 64u << 20;
              void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
              if (p == MAP_FAILED) return failed(1, "mmap");
              std::memset(p, 0x5A, size);
              if (munmap(p, size) != 0) return failed(2, "munmap");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, FileDescriptorPassingStillWorks) {
  EXPECT_EQ(confined([] {
              int sockets[2], pipe_fds[2];
              if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) return failed(1, "socketpair");
              if (pipe(pipe_fds) != 0) return failed(2, "pipe");

              char byte = 'x';
              iovec iov{&byte, 1};
              alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
              msghdr msg{};
              msg.msg_iov = &iov;
              msg.msg_iovlen = 1;
              msg.msg_control = control;
              msg.msg_controllen = sizeof control;
              cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
              cmsg->cmsg_level = SOL_SOCKET;
              cmsg->cmsg_type = SCM_RIGHTS;
              cmsg->cmsg_len = CMSG_LEN(sizeof(int));
              std::memcpy(CMSG_DATA(cmsg), &pipe_fds[1], sizeof(int));
              if (sendmsg(sockets[0], &msg, 0) != 1) return failed(3, "sendmsg with SCM_RIGHTS");

              msghdr received{};
              alignas(cmsghdr) char received_control[CMSG_SPACE(sizeof(int))] = {};
              received.msg_iov = &iov;
              received.msg_iovlen = 1;
              received.msg_control = received_control;
              received.msg_controllen = sizeof received_control;
              if (recvmsg(sockets[1], &received, 0) != 1) return failed(4, "recvmsg");
              cmsg = CMSG_FIRSTHDR(&received);
              if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS) return failed(5, "no descriptor received");
              int passed;
              std::memcpy(&passed, CMSG_DATA(cmsg), sizeof(int));
              if (write(passed, "ok", 2) != 2) return failed(6, "write to the received descriptor");
              char text[2];
              if (read(pipe_fds[0], text, 2) != 2 || std::memcmp(text, "ok", 2) != 0)
                return failed(7, "the pipe did not carry what was written");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, IoUringStillWorks) {
  EXPECT_EQ(confined([] {
              io_uring ring;
              if (const int rc = io_uring_queue_init(8, &ring, 0); rc < 0) {
                errno = -rc;
                return failed(1, "io_uring_queue_init");
              }
              io_uring_sqe* sqe = io_uring_get_sqe(&ring);
              io_uring_prep_nop(sqe);
              io_uring_sqe_set_data64(sqe, 7);
              if (io_uring_submit(&ring) != 1) return failed(2, "io_uring_submit");
              io_uring_cqe* cqe = nullptr;
              if (io_uring_wait_cqe(&ring, &cqe) != 0 || cqe->user_data != 7 || cqe->res != 0)
                return failed(3, "the nop did not complete");
              io_uring_cqe_seen(&ring, cqe);
              io_uring_queue_exit(&ring);
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, IoctlStillWorks) {
  EXPECT_EQ(confined([] {
              int fds[2];
              if (pipe(fds) != 0) return failed(1, "pipe");
              if (write(fds[1], "abc", 3) != 3) return failed(2, "write");
              int available = 0;
              if (ioctl(fds[0], FIONREAD, &available) != 0) return failed(3, "ioctl(FIONREAD)");
              return available == 3 ? 0 : failed(4, "FIONREAD did not count 3 bytes");
            }),
            0);
}

TEST(WorkerConfinement, SecondCallSucceeds) {
  EXPECT_EQ(confined([] {
              Confinement again;
              try {
                again = confine_worker();
              } catch (const std::exception& e) {
                return failed(1, e.what());
              }
              if (again.applied.empty()) return failed(2, "nothing reported as applied");
              if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) return failed(3, "dumpable is not 0");
              if (!refused(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr))) return failed(4, "PTRACE_TRACEME not refused");
              return 0;
            }),
            0);
}

TEST(WorkerConfinement, ThrowsWhenAnotherThreadExists) {
  const pid_t pid = fork();
  if (pid == 0) {
    int fds[2];
    if (pipe(fds) != 0) _exit(1);
    std::thread([fd = fds[0]] {
      char byte;
      (void)!read(fd, &byte, 1);  // blocks until the process exits
    }).detach();
    try {
      confine_worker();
    } catch (const std::runtime_error& e) {
      _exit(std::strstr(e.what(), "threads") ? 0 : 2);
    }
    _exit(3);  // confined a process with two threads
  }
  EXPECT_EQ(status_of(pid), 0);
}

}  // namespace
}  // namespace rgpu
