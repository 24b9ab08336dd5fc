// The thread that runs the application's host functions: it asks the server which one a stream
// has reached (rgpu.HostFunctionPoll, answered when one is), runs it, and says so with its next
// poll, which lets the stream go on.
#include "host_function_runner.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "api_state.hpp"
#include "captured_host_copies.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
std::mutex g_mutex;  // guards what follows
std::map<uint64_t, HostFunction>& functions() {
  static auto* value = new std::map<uint64_t, HostFunction>;  // never destroyed: see api_state.hpp
  return *value;
}
uint64_t g_next_id = 1;
pid_t g_runner_pid = 0;  // the process whose runner thread started (a forked child starts its own)
enum class Runner { Starting, Running, Failed } g_runner = Runner::Starting;
std::condition_variable g_runner_known;

thread_local bool t_in_host_function = false;

void run(const HostFunction& function, CUresult status) {
  t_in_host_function = true;
  if (function.callback != nullptr) function.callback(function.stream, status, function.data);
  else function.function(function.data);
  t_in_host_function = false;
}

void run_host_functions() {
  // Signals meant for the process go to the application's own threads.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  {
    const bool linked = DaemonLink::for_this_thread() != nullptr;
    std::lock_guard lock(g_mutex);
    g_runner = linked ? Runner::Running : Runner::Failed;
    g_runner_known.notify_all();
    if (!linked) return;
  }
  uint64_t done = 0;
  std::vector<uint8_t> read;  // what a captured copy's run read from this process's memory
  for (;;) {
    CallBuilder call(FN_rgpuHostFunctionPoll);
    call.writer().put(done).put<uint64_t>(read.size()).bytes(read.data(), read.size());
    read.clear();
    HostFunctionPollAnswer answer;
    const CUresult r = exchange_unordered(call, [&](WireReader& reader) { answer = decode_host_function_poll_answer(reader); });
    if (r != CUDA_SUCCESS) {
      if (r != kLinkLost) LOG_ERROR("host functions stop: the server answered a poll with %s", error_name_of(r));
      return;
    }
    done = 0;
    HostFunction function;
    bool known = false;
    {
      std::lock_guard lock(g_mutex);
      for (uint64_t id : answer.forgotten) functions().erase(id);
      if (answer.reached) {
        auto it = functions().find(answer.id);
        if ((known = it != functions().end())) {
          function = it->second;
          if (answer.once) functions().erase(it);
        }
      }
    }
    if (!answer.reached) continue;
    if (answer.kind != HostFunctionKind::Application) {
      // Refused, the server gets no bytes back and fails that launch's copy.
      relay_captured_copy(answer, read);
      done = answer.reach;
      continue;
    }
    if (known) run(function, static_cast<CUresult>(answer.status));
    else LOG_WARN("the server reached host function %llu, which this process never launched; skipped",
                  static_cast<unsigned long long>(answer.id));
    done = answer.reach;
  }
}
}  // namespace

namespace {
// With g_mutex held: the runner of this process is up (or known to have failed).
bool runner_started(std::unique_lock<std::mutex>& lock) {
  if (g_runner_pid != ::getpid()) {
    g_runner_pid = ::getpid();
    g_runner = Runner::Starting;
    functions().clear();
    // Detached, like the copy helpers: a library cannot join its threads at the program's exit.
    std::thread(run_host_functions).detach();
  }
  g_runner_known.wait(lock, [] { return g_runner != Runner::Starting; });
  return g_runner != Runner::Failed;
}
}  // namespace

bool start_host_function_runner() {
  std::unique_lock lock(g_mutex);
  return runner_started(lock);
}

uint64_t register_host_function(const HostFunction& function) {
  std::unique_lock lock(g_mutex);
  if (!runner_started(lock)) return 0;
  const uint64_t id = g_next_id++;
  functions().emplace(id, function);
  return id;
}

void forget_host_function(uint64_t id) {
  std::lock_guard lock(g_mutex);
  functions().erase(id);
}

bool find_host_function(uint64_t id, HostFunction& function) {
  std::lock_guard lock(g_mutex);
  auto it = functions().find(id);
  if (it == functions().end()) return false;
  function = it->second;
  return true;
}

bool in_host_function() { return t_in_host_function; }

}  // namespace rgpu::cuda
