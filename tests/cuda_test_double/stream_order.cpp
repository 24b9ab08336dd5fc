// The test double's stream order: work queued behind a host function waits for it, run in order
// by a thread of the stream's own, as a GPU and the driver's callback thread run a real stream.
#include <condition_variable>
#include <deque>
#include <thread>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
struct Item {
  StreamWork work;                             // device work, run under the driver lock
  std::function<void(CUresult)> host;          // or a host function, run without it
  bool after_faults = false;
};
struct Queue {
  std::deque<Item> items;
  bool running = false;   // the stream's thread runs an item it took from `items`
  bool draining = false;  // the stream's thread has not finished yet
  std::thread thread;     // joined before the next one starts
};
using Key = std::pair<CUcontext, CUstream>;

// Never destroyed: a stream's thread may still be parked at exit, and destroying a joinable
// std::thread ends the process.
std::map<Key, Queue>& queues() {
  static auto* value = new std::map<Key, Queue>;
  return *value;
}
std::condition_variable g_progress;  // an item ran, or a queue emptied

Key key_of(CUcontext context, CUstream stream) { return {context, is_default_stream(stream) ? nullptr : stream}; }

bool idle(const Key& key) {
  auto it = queues().find(key);
  return it == queues().end() || (it->second.items.empty() && !it->second.running);
}

// The legacy stream's implicit synchronization: what work issued on `key` waits for first.
bool implicit_waits_done(const Key& key) {
  if (key.second == nullptr) {
    for (const auto& [other, queue] : queues())
      if (other.first == key.first && other.second != nullptr && is_blocking_stream(other.second) && !idle(other))
        return false;
    return true;
  }
  return !is_blocking_stream(key.second) || idle({key.first, nullptr});
}

void drain(Key key) {
  auto lock = lock_driver();
  Queue& queue = queues()[key];
  while (!queue.items.empty()) {
    Item item = std::move(queue.items.front());
    queue.items.pop_front();
    queue.running = true;
    Context* context = find_context(key.first);
    const CUresult sticky = context == nullptr || !context->alive ? CUDA_ERROR_CONTEXT_IS_DESTROYED : context->sticky;
    if (item.host) {
      if (sticky == CUDA_SUCCESS || item.after_faults) {
        lock.unlock();
        item.host(sticky);
        lock.lock();
      }
    } else if (sticky == CUDA_SUCCESS) {
      if (CUresult fault = item.work(); fault != CUDA_SUCCESS) context->sticky = fault;
    }
    queue.running = false;
    g_progress.notify_all();
  }
  queue.draining = false;
  g_progress.notify_all();
}

void enqueue(const Key& key, Item item) {
  Queue& queue = queues()[key];
  queue.items.push_back(std::move(item));
  if (queue.draining) return;
  if (queue.thread.joinable()) queue.thread.join();  // it has finished: it cleared `draining` last
  queue.draining = true;
  queue.thread = std::thread(drain, key);
}
}  // namespace

void issue(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream, StreamWork work,
           const std::function<void()>& queued) {
  const Key key = key_of(context, stream);
  g_progress.wait(lock, [&] { return implicit_waits_done(key); });
  if (!idle(key)) {
    if (queued) queued();
    return enqueue(key, Item{std::move(work), nullptr});
  }
  if (CUresult fault = work(); fault != CUDA_SUCCESS) find_context(context)->sticky = fault;
  g_progress.notify_all();  // what it wrote may be what a stream waits for (cuStreamBatchMemOp)
}

void issue_host_function(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream,
                         std::function<void(CUresult status)> function, bool after_faults) {
  const Key key = key_of(context, stream);
  g_progress.wait(lock, [&] { return implicit_waits_done(key); });
  enqueue(key, Item{nullptr, std::move(function), after_faults});
}

bool stream_idle(CUcontext context, CUstream stream) {
  const Key key = key_of(context, stream);
  return idle(key) && (key.second != nullptr || implicit_waits_done(key));
}

void finish_stream(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream) {
  g_progress.wait(lock, [&] { return stream_idle(context, stream); });
}

void finish_context(std::unique_lock<std::mutex>& lock, CUcontext context) {
  g_progress.wait(lock, [&] {
    for (const auto& [key, queue] : queues())
      if (key.first == context && !idle(key)) return false;
    return true;
  });
}

void wait_for_queued_work(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done) {
  g_progress.wait(lock, done);
}

}  // namespace rgpu::cuda_double
