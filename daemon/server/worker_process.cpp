#include "worker_process.hpp"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "device_memory_meter.hpp"
#include "log.hpp"
#include "messages.hpp"

extern char** environ;

namespace rgpu {

namespace {
// What a worker inherits of the server's environment: how to find and drive the GPU drivers, and
// the log settings. Anything else (credentials a service manager or a shell left there) stays.
bool inherited(std::string_view entry) {
  static constexpr std::string_view kNames[] = {
      "PATH=", "HOME=", "LANG=", "TZ=", "TMPDIR=", "LD_LIBRARY_PATH=", "XDG_CACHE_HOME=", "JOURNAL_STREAM=",
      "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS=",
      // RGPU's own: the log level and where the drivers are (nothing else of RGPU_*, should an
      // operator keep something there that a worker has no business with).
      "RGPU_LOG=", "RGPU_CUDA_LIBRARY=", "RGPU_VULKAN_LIBRARY=", "RGPU_NVML_LIBRARY="};
  static constexpr std::string_view kPrefixes[] = {"LC_", "CUDA_", "NVIDIA_", "__GL_", "__NV_", "VK_",
                                                   "MESA_", "LP_", "GALLIUM_"};
  if (entry.starts_with("CUDA_VISIBLE_DEVICES=")) return false;  // the worker's own is set below
  for (auto name : kNames)
    if (entry.starts_with(name)) return true;
  for (auto prefix : kPrefixes)
    if (entry.starts_with(prefix)) return true;
  return false;
}

std::vector<std::string> worker_environment(const WorkerProcess::Kind& kind) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry)
    if (inherited(*entry)) env.emplace_back(*entry);
  // Only the session's GPUs exist for a CUDA worker's driver: another tenant's memory on another
  // GPU is not even mapped there.
  if (kind.api == AppApi::Cuda) {
    std::string visible = "CUDA_VISIBLE_DEVICES=";
    for (size_t i = 0; i < kind.gpus.size(); ++i) visible += (i ? "," : "") + gpu_uuid_text(kind.gpus[i]);
    env.push_back(visible);
  }
  env.push_back(std::string("RGPU_WORKER_API=") + app_api_name(kind.api));
  env.push_back("RGPU_WORKER_PARENT=" + std::to_string(::getpid()));
  return env;
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

constexpr uint32_t kMaxControlFrame = 64 << 10;

}  // namespace

std::string describe_exit_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    std::string text = "was killed by " + (name ? std::string("SIG") + name : "signal " + std::to_string(sig));
    if (WCOREDUMP(status)) text += " (core dumped)";
    return text;
  }
  return "ended with wait status " + std::to_string(status);
}

std::string WorkerProcess::Kind::key() const {
  std::string key = app_api_name(api);
  for (const auto& uuid : gpus) key += " " + gpu_uuid_text(uuid);
  return key;
}

std::shared_ptr<WorkerProcess> WorkerProcess::spawn(EventLoop& loop, const std::string& executable, const Kind& kind) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    throw std::runtime_error(std::string("cannot make a worker's control socket: ") + std::strerror(errno));
  UniqueFd ours(pair[0]), theirs(pair[1]);

  std::vector<std::string> env_strings = worker_environment(kind);
  std::vector<char*> env;
  for (auto& entry : env_strings) env.push_back(entry.data());
  env.push_back(nullptr);
  char arg0[] = "rgpu", arg1[] = "worker";
  char* argv[] = {arg0, arg1, nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  // Descriptor 3 is the control socket; nothing else of this process's crosses over.
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), kWorkerControlFd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kWorkerControlFd + 1);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  // A session of its own: no signal to the server's process group reaches it, and none of its
  // reaches the server's.
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  pid_t pid = 0;
  // By default the server's own executable (/proc/self/exe), even if a newer one has replaced it
  // on disk since the server started.
  const int error = ::posix_spawn(&pid, executable.c_str(), &actions, &attributes, argv, env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) throw std::runtime_error(std::string("cannot start a worker process: ") + std::strerror(error));
  theirs.reset();

  const int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error(std::string("cannot watch the worker process (pidfd_open): ") + std::strerror(e));
  }
  std::shared_ptr<WorkerProcess> worker(new WorkerProcess(loop, pid, pidfd));
  // Control messages are small: a worker (perhaps compromised) sends nothing larger.
  worker->control_ = std::make_shared<FrameLink>(loop, std::move(ours), "worker " + std::to_string(pid), kMaxControlFrame);
  std::weak_ptr<WorkerProcess> weak = worker;
  worker->control_->start(FrameLink::Callbacks{
      .on_frame = [weak](Frame&& frame) { if (auto self = weak.lock()) self->on_control_frame(std::move(frame)); },
      // The worker's end closes when it exits: its pidfd says how.
      .on_close = [](const std::string&) {},
      .on_malformed = [weak](const FrameError& e) {
        if (auto self = weak.lock()) {
          LOG_WARN("worker %d sent a malformed control frame (%s); ending it", self->pid_, e.what());
          self->kill();
        }
      },
  });
  worker->watch_exit();
  return worker;
}

WorkerProcess::WorkerProcess(EventLoop& loop, pid_t pid, int pidfd) : loop_(loop), pid_(pid), pidfd_(pidfd) {}

void WorkerProcess::start(const WorkerStartMsg& start, const std::shared_ptr<MemoryBudget>& budget, Events events) {
  started_ = true;
  events_ = std::move(events);
  last_answer_ = std::chrono::steady_clock::now();  // from here it has worker_timeout to be ready
  control_->send_with_fd(encode_frame(kMsgWorkerStart, 0, encode(start)), ::dup(budget->memfd()));
}

WorkerProcess::~WorkerProcess() {
  if (exited_) return;
  // The server is going away: its workers go with it (they would notice their control socket
  // closing; this makes it immediate and reaps them).
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

void WorkerProcess::watch_exit() {
  loop_.poll(pidfd_.get(), POLLIN, [weak = weak_from_this()](int) {
    if (auto self = weak.lock()) self->reap();
  });
}

void WorkerProcess::reap() {
  int status = 0;
  const pid_t got = ::waitpid(pid_, &status, WNOHANG);
  if (got == 0) return watch_exit();  // not yet (a spurious wake-up)
  exited_ = true;
  if (control_) control_->close("worker ended");
  std::string fate = got < 0 ? std::string("could not be waited for: ") + std::strerror(errno)
                             : describe_exit_status(status);
  if (!kill_reason_.empty()) fate = kill_reason_ + " (it " + fate + ")";
  if (auto on_exit = std::move(events_.on_exit)) on_exit(fate, start_error_);
  events_ = {};
}

void WorkerProcess::on_control_frame(Frame&& frame) {
  if (frame.header.type == kMsgWorkerPong) {
    ping_outstanding_ = false;
    last_answer_ = std::chrono::steady_clock::now();
    return;
  }
  if (frame.header.type == kMsgWorkerReady && !ready_) {
    ready_ = true;
    last_answer_ = std::chrono::steady_clock::now();
    if (events_.on_ready) events_.on_ready();
    return;
  }
  if (frame.header.type == static_cast<uint16_t>(MsgType::Error) && !ready_) {
    try {
      start_error_ = printable(decode_error(frame.payload).message, 512);  // one line, of a sensible length
    } catch (const std::exception& e) {
      start_error_ = std::string("an unreadable error (") + e.what() + ")";
    }
    return;  // it exits next
  }
  LOG_WARN("worker %d sent %s on its control channel; ending it", pid_, msg_type_name(frame.header.type));
  kill();
}

void WorkerProcess::adopt(WorkerRole role, FrameLink::Handover connection) {
  WorkerAdoptMsg adopt;
  adopt.role = role;
  if (connection.ssl) {
    adopt.rekey = true;
    adopt.psk = derive_worker_psk(connection.ssl.get());
  } else {
    adopt.unread = std::move(connection.unread);
  }
  control_->send_with_fd(encode_frame(kMsgWorkerAdopt, 0, encode(adopt)), connection.fd.release());
}

void WorkerProcess::kill(const std::string& reason) {
  if (exited_) return;
  if (kill_reason_.empty()) kill_reason_ = reason;
  ::kill(pid_, SIGKILL);
}

void WorkerProcess::check_alive(std::chrono::steady_clock::time_point now, std::chrono::seconds timeout) {
  if (!started_ || exited_ || !kill_reason_.empty()) return;
  if (now - last_answer_ > timeout) {
    LOG_WARN("worker %d has not answered for %lld s; ending it", pid_, static_cast<long long>(timeout.count()));
    return kill(ready_ ? "stopped answering the server for " + std::to_string(timeout.count()) +
                             " s (hung or stopped) and was ended"
                       : "did not start within " + std::to_string(timeout.count()) + " s and was ended");
  }
  if (ready_ && !ping_outstanding_ && now - last_answer_ > timeout / 3) {
    ping_outstanding_ = true;
    control_->send(encode_frame(kMsgWorkerPing, 0, {}));
  }
}

}  // namespace rgpu
