#include "cuda_host_functions.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "cuda_driver.hpp"
#include "cuda_functions.gen.hpp"
#include "cuda_wire.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
CUresult missing(const char* name) {
  LOG_WARN("the server's CUDA driver has no %s", name);
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace

CUgraph capture_graph(CUstream stream) {
  Driver& d = Driver::get();
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  CUgraph graph = nullptr;
  CUresult r = CUDA_ERROR_NOT_SUPPORTED;
  if (auto v3 = d.fn<CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                  const CUgraphEdgeData**, size_t*)>("cuStreamGetCaptureInfo_v3"))
    r = v3(stream, &status, nullptr, &graph, nullptr, nullptr, nullptr);
  else if (auto v2 = d.fn<CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                       size_t*)>("cuStreamGetCaptureInfo_v2"))
    r = v2(stream, &status, nullptr, &graph, nullptr, nullptr);
  // A stream that cannot be asked fails the launch itself, with the driver's error.
  return r == CUDA_SUCCESS && status == CU_STREAM_CAPTURE_STATUS_ACTIVE ? graph : nullptr;
}

namespace {
}  // namespace

CUresult HostFunctionRelay::launch(uint32_t variant, CUstream stream, uint64_t id, uint32_t flags) {
  const char* name = nullptr;
  bool callback = false;
  switch (variant) {
    case FN_cuLaunchHostFunc: name = "cuLaunchHostFunc"; break;
    case FN_cuLaunchHostFunc_ptsz: name = "cuLaunchHostFunc_ptsz"; break;
    case FN_cuStreamAddCallback: name = "cuStreamAddCallback", callback = true; break;
    case FN_cuStreamAddCallback_ptsz: name = "cuStreamAddCallback_ptsz", callback = true; break;
    default:
      LOG_WARN("%s: rgpu.LaunchHostFunction with function %u (0x%08x), which is not one of the values RGPU sends; "
               "refused", client_.c_str(), variant, variant);
      forget(id);
      return CUDA_ERROR_INVALID_VALUE;
  }
  Driver& d = Driver::get();
  const bool per_thread = variant == FN_cuLaunchHostFunc_ptsz || variant == FN_cuStreamAddCallback_ptsz;
  // Only a host function may be captured (cuStreamAddCallback refuses a capturing stream).
  CUgraph graph = callback ? nullptr : capture_graph(per_thread && stream == nullptr ? CU_STREAM_PER_THREAD : stream);
  auto* record = new Record{shared_from_this(), id, graph == nullptr};
  CUresult r;
  if (callback) {
    auto fn = d.fn<CUresult (*)(CUstream, CUstreamCallback, void*, unsigned)>(name);
    r = fn ? fn(stream, run_stream_callback, record, flags) : missing(name);
  } else if (flags != 0) {
    r = CUDA_ERROR_INVALID_VALUE;
  } else {
    auto fn = d.fn<CUresult (*)(CUstream, CUhostFn, void*)>(name);
    r = fn ? fn(stream, run_host_function, record) : missing(name);
  }
  if (r != CUDA_SUCCESS) {
    delete record;
    forget(id);
    return r;
  }
  if (graph != nullptr) keep_with_graph(record, graph);
  return CUDA_SUCCESS;
}

CUresult HostFunctionRelay::add_graph_node(CUgraphNode& node, CUgraph graph,
                                           const std::vector<CUgraphNode>& dependencies, uint64_t id) {
  auto fn = Driver::get().fn<CUresult (*)(CUgraphNode*, CUgraph, const CUgraphNode*, size_t,
                                          const CUDA_HOST_NODE_PARAMS*)>("cuGraphAddHostNode");
  if (!fn) {
    forget(id);
    return missing("cuGraphAddHostNode");
  }
  auto* record = new Record{shared_from_this(), id, false};
  const CUDA_HOST_NODE_PARAMS params{run_host_function, record};
  const CUresult r = fn(&node, graph, dependencies.empty() ? nullptr : dependencies.data(), dependencies.size(), &params);
  if (r != CUDA_SUCCESS) {
    delete record;
    forget(id);
    return r;
  }
  keep_with_graph(record, graph);
  return CUDA_SUCCESS;
}

HostFunctionRelay::Record* HostFunctionRelay::node_record(CUgraphNode node, std::unique_lock<std::mutex>& lock,
                                                          CUresult& result) {
  auto get = Driver::get().fn<CUresult (*)(CUgraphNode, CUDA_HOST_NODE_PARAMS*)>("cuGraphHostNodeGetParams");
  if (!get) {
    result = missing("cuGraphHostNodeGetParams");
    return nullptr;
  }
  CUDA_HOST_NODE_PARAMS params{};
  if ((result = get(node, &params)) != CUDA_SUCCESS) return nullptr;
  lock.lock();
  // What the driver gives back is looked up, never trusted to be a record.
  result = CUDA_ERROR_INVALID_VALUE;
  if (params.fn != run_host_function || !graph_records_.contains(params.userData)) {
    LOG_WARN("%s: a host node whose function is none of this session's; refused", client_.c_str());
    return nullptr;
  }
  auto* record = static_cast<Record*>(params.userData);
  if (record->kind != HostFunctionKind::Application) {
    LOG_WARN("%s: the host node of a captured copy of the application's memory runs no function of the "
             "application's; refused", client_.c_str());
    return nullptr;
  }
  result = CUDA_SUCCESS;
  return record;
}

CUresult HostFunctionRelay::node_function(CUgraphNode node, uint64_t& id) {
  std::unique_lock lock(mutex_, std::defer_lock);
  CUresult r;
  const Record* record = node_record(node, lock, r);
  if (record != nullptr) id = record->id;
  return r;
}

CUresult HostFunctionRelay::set_node_function(bool in_exec, CUgraphExec exec, CUgraphNode node, uint64_t id) {
  Driver& d = Driver::get();
  auto set = d.fn<CUresult (*)(CUgraphNode, const CUDA_HOST_NODE_PARAMS*)>("cuGraphHostNodeSetParams");
  auto set_exec =
      d.fn<CUresult (*)(CUgraphExec, CUgraphNode, const CUDA_HOST_NODE_PARAMS*)>("cuGraphExecHostNodeSetParams");
  if (in_exec ? !set_exec : !set) {
    forget(id);
    return missing(in_exec ? "cuGraphExecHostNodeSetParams" : "cuGraphHostNodeSetParams");
  }
  // The new record goes with the node's first one, which the graph and every executable graph
  // made from it hold: it lives as long as any of them may run it.
  std::unique_lock lock(mutex_, std::defer_lock);
  CUresult r;
  Record* current = node_record(node, lock, r);
  if (current == nullptr) {
    if (lock.owns_lock()) lock.unlock();
    forget(id);
    return r;
  }
  Record* root = current->root != nullptr ? current->root : current;
  auto* record = new Record{shared_from_this(), id, false};
  record->root = root;
  root->successors.push_back(record);
  graph_records_.insert(record);
  lock.unlock();
  const CUDA_HOST_NODE_PARAMS params{run_host_function, record};
  r = in_exec ? set_exec(exec, node, &params) : set(node, &params);
  if (r == CUDA_SUCCESS) return r;
  lock.lock();
  if (graph_records_.erase(record) == 1) {  // else its graph went meanwhile, and the record with it
    std::erase(root->successors, record);
    delete record;
  }
  lock.unlock();
  forget(id);
  return r;
}

bool HostFunctionRelay::reserve_staging(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  if (bytes > kMaxCapturedStaging - staging_bytes_) return false;
  staging_bytes_ += bytes;
  return true;
}

void HostFunctionRelay::unreserve_staging(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  staging_bytes_ -= std::min(staging_bytes_, bytes);
}

CUresult HostFunctionRelay::capture_copy(HostFunctionKind kind, CUstream stream, CUgraph graph, uint64_t address,
                                         void* staging, uint64_t size) {
  uint64_t id;
  {
    std::lock_guard lock(mutex_);
    id = next_copy_id_++;
  }
  auto* record = new Record{shared_from_this(), id, false, kind, address, staging, size};
  auto fn = Driver::get().fn<CUresult (*)(CUstream, CUhostFn, void*)>("cuLaunchHostFunc");
  const CUresult r = fn ? fn(stream, run_host_function, record) : missing("cuLaunchHostFunc");
  if (r != CUDA_SUCCESS) {
    forget_record(record);
    return r;
  }
  keep_with_graph(record, graph);
  return CUDA_SUCCESS;
}

std::vector<void*> HostFunctionRelay::take_released_staging() {
  if (!any_released_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(mutex_);
  any_released_.store(false, std::memory_order_relaxed);
  return std::exchange(released_staging_, {});
}

// The graph holds a user object whose destructor frees the record and has the application forget
// the id; the driver runs it once the graph and every executable graph made from it are gone.
void HostFunctionRelay::keep_with_graph(Record* record, CUgraph graph) {
  {
    std::lock_guard lock(mutex_);
    graph_records_.insert(record);
  }
  Driver& d = Driver::get();
  auto create = d.fn<CUresult (*)(CUuserObject*, void*, CUhostFn, unsigned, unsigned)>("cuUserObjectCreate");
  auto retain = d.fn<CUresult (*)(CUgraph, CUuserObject, unsigned, unsigned)>("cuGraphRetainUserObject");
  CUuserObject object = nullptr;
  if (create && retain && create(&object, record, forget_record, 1, CU_USER_OBJECT_NO_DESTRUCTOR_SYNC) == CUDA_SUCCESS &&
      retain(graph, object, 1, CU_GRAPH_USER_OBJECT_MOVE) == CUDA_SUCCESS)
    return;
  // Releasing the object would free the record under the node: both stay until the process ends.
  LOG_WARN("%s: a graph's host function cannot be tied to the graph's life here; it is kept for the session",
           client_.c_str());
}

void CUDA_CB HostFunctionRelay::run_host_function(void* data) {
  auto* record = static_cast<Record*>(data);
  record->relay->reached(*record, CUDA_SUCCESS);
  if (record->once) delete record;
}

void CUDA_CB HostFunctionRelay::run_stream_callback(CUstream, CUresult status, void* data) {
  auto* record = static_cast<Record*>(data);
  record->relay->reached(*record, status);
  if (record->once) delete record;
}

void CUDA_CB HostFunctionRelay::forget_record(void* data) {
  auto* record = static_cast<Record*>(data);
  const std::shared_ptr<HostFunctionRelay> relay = record->relay;
  std::vector<Record*> successors;
  {
    std::lock_guard lock(relay->mutex_);
    relay->graph_records_.erase(record);
    successors = std::move(record->successors);
    for (const Record* successor : successors) relay->graph_records_.erase(successor);
    if (record->staging != nullptr) {
      relay->released_staging_.push_back(record->staging);
      relay->any_released_.store(true, std::memory_order_release);
    }
  }
  if (record->staging != nullptr) relay->unreserve_staging(record->size);
  for (Record* successor : successors) {
    relay->forget(successor->id);
    delete successor;
  }
  relay->forget(record->id);
  delete record;
}

void HostFunctionRelay::reached(const Record& record, CUresult status) {
  std::unique_lock lock(mutex_);
  if (closed_) return;
  const uint64_t reach = next_reach_++;
  const bool copy = record.kind != HostFunctionKind::Application;
  reached_.push_back(Reach{reach, record.id, status, record.once, copy ? &record : nullptr});
  waiting_.insert(reach);
  Ready ready = answers_due();
  lock.unlock();
  send(std::move(ready));
  lock.lock();
  finished_.wait(lock, [&] { return closed_ || !waiting_.contains(reach); });
}

void HostFunctionRelay::forget(uint64_t id) {
  std::unique_lock lock(mutex_);
  if (closed_) return;
  forgotten_.push_back(id);
  Ready ready = answers_due();
  lock.unlock();
  send(std::move(ready));
}

void HostFunctionRelay::poll(uint64_t done, std::span<const uint8_t> bytes, Answer answer) {
  std::unique_lock lock(mutex_);
  if (closed_) return;
  if (auto read = reading_.find(done); read != reading_.end()) {
    // What the application read for a captured copy from its memory: the stream's next node
    // copies it to the device.
    if (bytes.size() == read->second->size) std::memcpy(read->second->staging, bytes.data(), bytes.size());
    else
      LOG_WARN("%s: the application sent %zu bytes for a captured copy of %llu; the copy has what it had before",
               client_.c_str(), bytes.size(), static_cast<unsigned long long>(read->second->size));
    reading_.erase(read);
  } else if (!bytes.empty()) {
    LOG_WARN("%s: a host function poll with %zu bytes for run %llu, which reads none; ignored", client_.c_str(),
             bytes.size(), static_cast<unsigned long long>(done));
  }
  if (done != 0) {
    if (waiting_.erase(done) == 1) {
      finished_.notify_all();
    } else {
      LOG_WARN("%s: the application says host function run %llu is done, which no stream waits for; ignored",
               client_.c_str(), static_cast<unsigned long long>(done));
    }
  }
  if (polls_.size() >= kMaxPolls) {
    lock.unlock();
    LOG_WARN("%s: more than %zu host function polls wait at once; refused", client_.c_str(), kMaxPolls);
    answer(CUDA_ERROR_INVALID_VALUE, {});
    return;
  }
  polls_.push_back(std::move(answer));
  Ready ready = answers_due();
  lock.unlock();
  send(std::move(ready));
}

HostFunctionRelay::Ready HostFunctionRelay::answers_due() {
  Ready ready;
  while (!polls_.empty() && (!reached_.empty() || !forgotten_.empty())) {
    HostFunctionPollAnswer answer;
    if (!reached_.empty()) {
      const Reach& next = reached_.front();
      answer.reached = true;
      answer.reach = next.reach;
      answer.id = next.id;
      answer.status = next.status;
      answer.once = next.once;
      if (next.copy != nullptr) {
        answer.kind = next.copy->kind;
        answer.address = next.copy->address;
        answer.size = next.copy->size;
        const auto* staging = static_cast<const uint8_t*>(next.copy->staging);
        if (answer.kind == HostFunctionKind::WriteToHost) answer.bytes.assign(staging, staging + next.copy->size);
        else reading_[next.reach] = next.copy;
      }
      reached_.pop_front();
    }
    answer.forgotten = std::move(forgotten_);
    forgotten_.clear();
    WireWriter out;
    encode(out, answer);
    ready.emplace_back(std::move(polls_.front()), out.take());
    polls_.pop_front();
  }
  return ready;
}

void HostFunctionRelay::send(Ready ready) {
  for (auto& [answer, outputs] : ready) answer(CUDA_SUCCESS, std::move(outputs));
}

void HostFunctionRelay::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  reached_.clear();
  waiting_.clear();
  forgotten_.clear();
  polls_.clear();
  reading_.clear();
  finished_.notify_all();
}

}  // namespace rgpu::cuda
