// The main server process's side of one worker: starts `rgpu worker` by exec (so that it inherits
// none of this process's memory: tokens, keys, other sessions), hands it its session's connections,
// and notices its end, whatever ends it. Lives on the main event loop's thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event_loop.hpp"
#include "frame_link.hpp"
#include "memory_budget.hpp"
#include "worker_protocol.hpp"

namespace rgpu {

class WorkerProcess : public std::enable_shared_from_this<WorkerProcess> {
 public:
  struct Events {
    // The worker has started its session's API (once; before it, nothing is adopted).
    std::function<void()> on_ready;
    // The worker has ended; `fate` says how, as a sentence ("was killed by SIGSEGV"), and
    // `start_error` is the worker's own reason when it could not start its session.
    std::function<void(const std::string& fate, const std::string& start_error)> on_exit;
  };

  // What a worker is made for before it is given a session: its API and its GPUs, which are the
  // only ones its driver sees from its start. A worker made ahead of need (a spare, its driver
  // already started) fits only sessions of the same kind.
  struct Kind {
    AppApi api = AppApi::Cuda;
    std::vector<std::array<uint8_t, 16>> gpus;
    std::string key() const;
  };

  // Starts `executable worker`, which starts its API's driver and waits for its session; throws
  // std::runtime_error naming the step that failed.
  static std::shared_ptr<WorkerProcess> spawn(EventLoop& loop, const std::string& executable, const Kind& kind);
  ~WorkerProcess();

  // Gives the worker its session (once); `start` must be of the worker's kind.
  void start(const WorkerStartMsg& start, const std::shared_ptr<MemoryBudget>& budget, Events events);

  // Gives the worker a connection of its session (after on_ready). The socket is the worker's
  // from here on; a TLS connection's session stays here and is replaced by the worker's own.
  void adopt(WorkerRole role, FrameLink::Handover connection);
  // Ends the worker now (SIGKILL); on_exit follows, its fate `reason` when given.
  void kill(const std::string& reason = {});
  // Liveness: asks the worker now and then, and ends it when it has not answered for `timeout`
  // (or has not started within it). Called regularly from the loop.
  void check_alive(std::chrono::steady_clock::time_point now, std::chrono::seconds timeout);

  pid_t pid() const { return pid_; }
  bool started() const { return started_; }
  bool ready() const { return ready_; }
  bool exited() const { return exited_; }
  std::chrono::steady_clock::time_point born() const { return born_; }

 private:
  WorkerProcess(EventLoop& loop, pid_t pid, int pidfd);
  void watch_exit();
  void reap();
  void on_control_frame(Frame&& frame);

  EventLoop& loop_;
  pid_t pid_;
  UniqueFd pidfd_;
  Events events_;
  std::shared_ptr<FrameLink> control_;
  bool started_ = false;
  bool ready_ = false;
  bool exited_ = false;
  std::string start_error_;
  std::string kill_reason_;
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_answer_ = born_;
  bool ping_outstanding_ = false;
};

// "exited with status 3", "was killed by SIGSEGV (core dumped)", from a waitpid status.
std::string describe_exit_status(int status);

}  // namespace rgpu
