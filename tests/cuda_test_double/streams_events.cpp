// The test double's streams, events, stream capture, graphs and batches of memory operations.
// Work runs when it is issued unless a host function or a wait holds its stream up
// (stream_order.cpp), so a stream is idle but for that; an event completes when the stream
// reaches its record. Capture records event records, kernels and host functions as nodes, each
// depending on the one captured before it; a graph's launch issues its nodes in the order they
// were added. User objects live as long as the graphs and executable graphs that hold them.
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <thread>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
using Clock = std::chrono::steady_clock;

// The capture's dependencies are the last node captured.
struct Capture {
  cuuint64_t id = 0;
  CUgraph graph = nullptr;
  std::vector<CUgraphNode> dependencies;
  std::vector<CUgraphEdgeData> edges;
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
  bool invalidated = false;  // an unsafe call was made meanwhile: ending it fails
  std::thread::id thread = std::this_thread::get_id();  // the thread that began it
};
struct Stream {
  CUcontext context;
  unsigned flags;
  std::optional<Capture> capture;
};
struct Condition {
  unsigned default_value;
  unsigned flags;
};
using UserObjectCounts = std::map<CUuserObject, unsigned>;
struct Graph {
  CUcontext context;  // graphs go with the context they were made in
  std::vector<CUgraphNode> nodes;
  UserObjectCounts user_objects;
};
struct Exec {
  CUcontext context;
  std::vector<GraphNode> nodes;
  UserObjectCounts user_objects;
  std::vector<CUgraphNode> origins;  // the graph's node each of `nodes` was made from
};
struct Event {
  CUcontext context;
  unsigned flags;
  bool recorded = false;
  Clock::time_point at{};
  // Records are numbered as they are issued. What the event stands for is its latest record (a
  // query, a synchronisation, a stream's wait: a later record is not waited for).
  uint64_t last_record = 0;
  std::set<uint64_t> pending = {};  // records whose stream has not reached them yet
};
struct UserObject {
  void* data;
  CUhostFn destroy;
  unsigned references;
};
Registry<CUstream, Stream> g_streams;
Registry<CUevent, Event> g_events;
Registry<CUgraph, Graph> g_graphs;
Registry<CUgraphNode, GraphNode> g_nodes;
Registry<CUgraphExec, Exec> g_execs;
Registry<CUuserObject, UserObject> g_user_objects;
Registry<CUgraphConditionalHandle*, Condition> g_conditions;  // handles as numbers
cuuint64_t g_last_capture_id = 0;

// The error of the context the stream belongs to (the current one for the default stream).
CUresult stream_state(CUstream stream) {
  CUcontext current;
  if (is_default_stream(stream)) return current_context(current);
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Stream* found = g_streams.find(stream);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return find_context(found->context)->sticky;
}

// The context whose queue holds the stream's work.
CUcontext context_of(CUstream stream) {
  if (const Stream* found = is_default_stream(stream) ? nullptr : g_streams.find(stream)) return found->context;
  CUcontext current = nullptr;
  current_context(current);
  return current;
}

CUresult event_state(CUevent event) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Event* found = g_events.find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return find_context(found->context)->sticky;
}

Stream* capturing(CUstream stream) {
  Stream* found = is_default_stream(stream) ? nullptr : g_streams.find(stream);
  return found != nullptr && found->capture ? found : nullptr;
}

// A node captured on the stream becomes the capture's dependency.
void capture_node(Stream& stream, GraphNode node) {
  node.graph = stream.capture->graph;
  node.dependencies = stream.capture->dependencies;
  const CUgraphNode handle = g_nodes.add(std::move(node));
  g_graphs.find(stream.capture->graph)->nodes.push_back(handle);
  stream.capture->dependencies = {handle};
  stream.capture->edges = {CUgraphEdgeData{}};
}

// The event's record, completed when the stream reaches it.
void issue_record(std::unique_lock<std::mutex>& lock, CUcontext context, CUevent event, CUstream stream) {
  Event& found = *g_events.find(event);
  const uint64_t record = ++found.last_record;
  found.pending.insert(record);
  issue(lock, context, stream, [event, record] {
    if (Event* reached = g_events.find(event)) {
      reached->pending.erase(record);
      if (record == reached->last_record) {  // an earlier record reached later is not its time
        reached->recorded = true;
        reached->at = Clock::now();
      }
    }
    return CUDA_SUCCESS;
  });
}

// Whether the event's record `record` has completed (or the event is gone).
bool record_done(CUevent event, uint64_t record) {
  const Event* found = g_events.find(event);
  return found == nullptr || !found->pending.contains(record);
}

// Destructors of user objects whose last reference went, called once the driver lock is released
// (the driver calls them from a thread of its own).
using Destructors = std::vector<std::pair<CUhostFn, void*>>;

void release_user_object(CUuserObject object, unsigned count, Destructors& destructors) {
  UserObject* found = g_user_objects.find(object);
  if (found == nullptr) return;
  found->references -= std::min(count, found->references);
  if (found->references > 0) return;
  destructors.emplace_back(found->destroy, found->data);
  g_user_objects.remove(object);
}

void release_all(const UserObjectCounts& counts, Destructors& destructors) {
  for (const auto& [object, count] : counts) release_user_object(object, count, destructors);
}

void run(std::unique_lock<std::mutex>& lock, const Destructors& destructors) {
  lock.unlock();
  for (const auto& [destroy, data] : destructors) destroy(data);
}
}  // namespace

bool is_default_stream(CUstream stream) {
  return stream == nullptr || stream == CU_STREAM_LEGACY || stream == CU_STREAM_PER_THREAD;
}

bool is_blocking_stream(CUstream stream) {
  const Stream* found = is_default_stream(stream) ? nullptr : g_streams.find(stream);
  return found != nullptr && !(found->flags & CU_STREAM_NON_BLOCKING);
}

CUresult check_stream(CUstream stream, CUcontext context) {
  if (is_default_stream(stream)) return CUDA_SUCCESS;
  const Stream* found = g_streams.find(stream);
  return found != nullptr && found->context == context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

bool capture_copy(CUstream stream, const StreamWork& work, const CUDA_MEMCPY3D& copy) {
  Stream* s = capturing(stream);
  if (s == nullptr) return false;
  capture_node(*s, GraphNode{.work = work, .copy = copy});
  return true;
}

bool capture_kernel(CUstream stream, const KernelCall& call) {
  Stream* s = capturing(stream);
  if (s == nullptr) return false;
  capture_node(*s, GraphNode{.kernel = call});
  return true;
}

void release_streams_and_events_of(std::unique_lock<std::mutex>& lock, CUcontext context) {
  g_streams.remove_if([&](const Stream& stream) { return stream.context == context; });
  g_events.remove_if([&](const Event& event) { return event.context == context; });
  Destructors destructors;
  for (CUgraphExec exec : g_execs.handles_if([&](const Exec& e) { return e.context == context; })) {
    release_all(g_execs.find(exec)->user_objects, destructors);
    g_execs.remove(exec);
  }
  for (CUgraph graph : g_graphs.handles_if([&](const Graph& g) { return g.context == context; })) {
    for (CUgraphNode node : g_graphs.find(graph)->nodes) g_nodes.remove(node);
    release_all(g_graphs.find(graph)->user_objects, destructors);
    g_graphs.remove(graph);
  }
  run(lock, destructors);
  lock.lock();
}

// The calling thread's capture interaction mode (cuThreadExchangeStreamCaptureMode), global by default.
thread_local CUstreamCaptureMode t_capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

// CUDA's rules for a potentially unsafe call: a thread in relaxed mode may always make one; one in
// thread-local mode not while a capture it began (not in relaxed mode) is under way; one in global
// mode not then either, nor while another thread's global-mode capture is. Each capture that
// refuses the call is invalidated.
bool unsafe_during_capture(CUcontext context) {
  if (t_capture_mode == CU_STREAM_CAPTURE_MODE_RELAXED) return false;
  const std::thread::id self = std::this_thread::get_id();
  bool refused = false;
  for (CUstream handle : g_streams.handles_if([&](const Stream& s) {
         if (s.context != context || !s.capture) return false;
         const Capture& c = *s.capture;
         if (c.thread == self) return c.mode != CU_STREAM_CAPTURE_MODE_RELAXED;
         return t_capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL && c.mode == CU_STREAM_CAPTURE_MODE_GLOBAL;
       })) {
    g_streams.find(handle)->capture->invalidated = true;
    refused = true;
  }
  return refused;
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
  if (mode == nullptr || *mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
  std::swap(*mode, t_capture_mode);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned int flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (stream == nullptr || (flags & ~unsigned{CU_STREAM_NON_BLOCKING}) != 0) return CUDA_ERROR_INVALID_VALUE;
  *stream = g_streams.add(Stream{context, flags, std::nullopt});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  auto lock = lock_driver();
  if (is_default_stream(stream)) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  g_streams.remove(stream);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  finish_stream(lock, context_of(stream), stream);
  release_pool_memory();
  return stream_state(stream);
}

DOUBLE_EXPORT CUresult cuStreamQuery(CUstream stream) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  return stream_idle(context_of(stream), stream) ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

// Ids: the legacy default stream 1, a thread's per-thread default stream 2, created streams
// from 1000 up.
DOUBLE_EXPORT CUresult cuStreamGetId(CUstream stream, unsigned long long* id) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (stream == nullptr || stream == CU_STREAM_LEGACY) *id = 1;
  else if (stream == CU_STREAM_PER_THREAD) *id = 2;
  else *id = 1000 + reinterpret_cast<uintptr_t>(stream);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamGetId_ptsz(CUstream stream, unsigned long long* id) {
  return cuStreamGetId(stream == nullptr ? CU_STREAM_PER_THREAD : stream, id);
}

DOUBLE_EXPORT CUresult cuEventCreate(CUevent* event, unsigned int flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (event == nullptr || (flags & ~unsigned{CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS}))
    return CUDA_ERROR_INVALID_VALUE;
  if (flags & CU_EVENT_INTERPROCESS) return CUDA_ERROR_NOT_SUPPORTED;
  *event = g_events.add(Event{context, flags});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuEventRecord(CUevent event, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  Event* found = g_events.find(event);
  if (found == nullptr || found->context != context) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (Stream* s = capturing(stream)) {
    capture_node(*s, GraphNode{.event = event});
    return CUDA_SUCCESS;
  }
  issue_record(lock, context, event, stream);
  return CUDA_SUCCESS;
}

// The stream's later work waits until the event's latest record so far has completed (not for a
// record issued after the wait).
DOUBLE_EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  const Event* found = g_events.find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (flags & ~unsigned{CU_EVENT_WAIT_EXTERNAL}) return CUDA_ERROR_INVALID_VALUE;
  if (capturing(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  const uint64_t record = found->last_record;
  if (record_done(event, record)) return CUDA_SUCCESS;
  issue_host_function(lock, context, stream, [event, record](CUresult) {
    auto relock = lock_driver();
    wait_for_queued_work(relock, [&] { return record_done(event, record); });
  }, true);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuEventQuery(CUevent event) {
  auto lock = lock_driver();
  if (CUresult r = event_state(event); r != CUDA_SUCCESS) return r;
  return record_done(event, g_events.find(event)->last_record) ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

DOUBLE_EXPORT CUresult cuEventSynchronize(CUevent event) {
  auto lock = lock_driver();
  if (CUresult r = event_state(event); r != CUDA_SUCCESS) return r;
  const uint64_t record = g_events.find(event)->last_record;
  wait_for_queued_work(lock, [&] { return record_done(event, record); });
  release_pool_memory();
  return event_state(event);
}

DOUBLE_EXPORT CUresult cuEventElapsedTime_v2(float* milliseconds, CUevent start, CUevent end) {
  auto lock = lock_driver();
  if (CUresult r = event_state(start); r != CUDA_SUCCESS) return r;
  if (CUresult r = event_state(end); r != CUDA_SUCCESS) return r;
  if (milliseconds == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Event& from = *g_events.find(start);
  const Event& to = *g_events.find(end);
  if (!from.recorded || !to.recorded || ((from.flags | to.flags) & CU_EVENT_DISABLE_TIMING))
    return CUDA_ERROR_INVALID_HANDLE;
  *milliseconds = std::chrono::duration<float, std::milli>(to.at - from.at).count();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  auto lock = lock_driver();
  if (CUresult r = event_state(event); r != CUDA_SUCCESS) return r;
  g_events.remove(event);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, CUstreamCaptureMode mode) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (is_default_stream(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
  Stream& found = *g_streams.find(stream);
  if (found.capture) return CUDA_ERROR_ILLEGAL_STATE;
  found.capture = Capture{++g_last_capture_id, g_graphs.add(Graph{found.context, {}, {}}), {}, {}, mode, false};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream stream, CUgraph graph, const CUgraphNode* dependencies,
                                                   const CUgraphEdgeData*, size_t count, CUstreamCaptureMode mode) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (is_default_stream(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (mode > CU_STREAM_CAPTURE_MODE_RELAXED || g_graphs.find(graph) == nullptr || (count > 0 && dependencies == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  Stream& found = *g_streams.find(stream);
  if (found.capture) return CUDA_ERROR_ILLEGAL_STATE;
  found.capture = Capture{++g_last_capture_id, graph, {dependencies, dependencies + count},
                          std::vector<CUgraphEdgeData>(count)};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* found = is_default_stream(stream) ? nullptr : g_streams.find(stream);
  if (found == nullptr || !found->capture) return CUDA_ERROR_ILLEGAL_STATE;
  const bool invalidated = found->capture->invalidated;
  *graph = invalidated ? nullptr : found->capture->graph;
  found->capture.reset();
  return invalidated ? CUDA_ERROR_STREAM_CAPTURE_INVALIDATED : CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  auto lock = lock_driver();
  Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  for (CUgraphNode node : found->nodes) g_nodes.remove(node);
  Destructors destructors;
  release_all(found->user_objects, destructors);
  g_graphs.remove(graph);
  run(lock, destructors);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                 CUgraph* graph, const CUgraphNode** dependencies,
                                                 const CUgraphEdgeData** edges, size_t* count) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (status == nullptr || (edges != nullptr && dependencies == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  const Stream* found = is_default_stream(stream) ? nullptr : g_streams.find(stream);
  if (found == nullptr || !found->capture) {
    *status = CU_STREAM_CAPTURE_STATUS_NONE;
    return CUDA_SUCCESS;
  }
  const Capture& capture = *found->capture;
  *status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
  if (id) *id = capture.id;
  if (graph) *graph = capture.graph;
  if (dependencies) *dependencies = capture.dependencies.empty() ? nullptr : capture.dependencies.data();
  if (edges) *edges = capture.edges.empty() ? nullptr : capture.edges.data();
  if (count) *count = capture.dependencies.size();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                      CUgraph* graph, const CUgraphNode** dependencies,
                                                      const CUgraphEdgeData** edges, size_t* count) {
  return cuStreamGetCaptureInfo_v3(stream, status, id, graph, dependencies, edges, count);
}

DOUBLE_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                 CUgraph* graph, const CUgraphNode** dependencies, size_t* count) {
  return cuStreamGetCaptureInfo_v3(stream, status, id, graph, dependencies, nullptr, count);
}

// Stream attributes: kept per stream and attribute; a stream that never had one set reports zeros
// (priority: the stream's priority, 0 here).
namespace {
std::map<std::pair<CUstream, CUstreamAttrID>, CUstreamAttrValue>& stream_attributes() {
  static auto* attributes = new std::map<std::pair<CUstream, CUstreamAttrID>, CUstreamAttrValue>;
  return *attributes;
}
}  // namespace

DOUBLE_EXPORT CUresult cuStreamSetAttribute(CUstream stream, CUstreamAttrID attribute, const CUstreamAttrValue* value) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  stream_attributes()[{stream, attribute}] = *value;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamGetAttribute(CUstream stream, CUstreamAttrID attribute, CUstreamAttrValue* value) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto it = stream_attributes().find({stream, attribute});
  *value = it != stream_attributes().end() ? it->second : CUstreamAttrValue{};
  return CUDA_SUCCESS;
}

// Host functions run on the stream's own thread once the stream reaches them (stream_order.cpp);
// captured, they become host nodes.
DOUBLE_EXPORT CUresult cuLaunchHostFunc(CUstream stream, CUhostFn function, void* data) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (function == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (Stream* s = capturing(stream)) {
    capture_node(*s, GraphNode{.function = function, .data = data});
    return CUDA_SUCCESS;
  }
  issue_host_function(lock, context, stream, [function, data](CUresult) { function(data); }, false);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamAddCallback(CUstream stream, CUstreamCallback callback, void* data, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (callback == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (capturing(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  issue_host_function(
      lock, context, stream, [stream, callback, data](CUresult status) { callback(stream, status, data); }, true);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphCreate(CUgraph* graph, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (graph == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  *graph = g_graphs.add(Graph{context, {}, {}});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  const Graph* found = g_graphs.find(graph);
  if (exec == nullptr || found == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  Exec made{context, {}, found->user_objects, found->nodes};
  for (CUgraphNode node : found->nodes) made.nodes.push_back(*g_nodes.find(node));
  for (const auto& [object, count] : made.user_objects) g_user_objects.find(object)->references += count;
  *exec = g_execs.add(std::move(made));
  return CUDA_SUCCESS;
}

namespace {
// A graph's nodes in the order they were added; a conditional node's body as its value says.
void issue_nodes(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream, const std::vector<GraphNode>& nodes) {
  for (const GraphNode& node : nodes) {
    if (node.function != nullptr) {
      issue_host_function(lock, context, stream, [node](CUresult) { node.function(node.data); }, false);
    } else if (node.kernel) {
      issue(lock, context, stream, kernel_work(*node.kernel, context));
    } else if (node.work) {
      issue(lock, context, stream, node.work);
    } else if (!node.bodies.empty()) {
      const Condition* condition = g_conditions.find(reinterpret_cast<CUgraphConditionalHandle*>(node.condition));
      const bool taken = condition != nullptr && condition->default_value != 0;
      const CUgraph body = taken ? node.bodies[0] : node.bodies.size() > 1 ? node.bodies[1] : nullptr;
      std::vector<GraphNode> inner;
      if (const Graph* graph = g_graphs.find(body))
        for (CUgraphNode handle : graph->nodes) inner.push_back(*g_nodes.find(handle));
      issue_nodes(lock, context, stream, inner);
    } else if (node.batch) {
      issue_batch(lock, context, stream, node.batch->operations);
    } else if (g_events.find(node.event) != nullptr) {
      issue_record(lock, context, node.event, stream);
    }
  }
}
}  // namespace

DOUBLE_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  const Exec* found = g_execs.find(exec);
  if (found == nullptr || found->context != context) return CUDA_ERROR_INVALID_HANDLE;
  // Issuing may wait, and the executable graph go meanwhile: the launch holds what it needs. Its
  // user objects stay until the launch has run, as the driver's do.
  const std::vector<GraphNode> nodes = found->nodes;
  const UserObjectCounts held = found->user_objects;
  for (const auto& [object, count] : held) g_user_objects.find(object)->references += count;
  issue_nodes(lock, context, stream, nodes);
  if (!held.empty())
    issue_host_function(lock, context, stream, [held](CUresult) {
      auto relock = lock_driver();
      Destructors destructors;
      release_all(held, destructors);
      run(relock, destructors);
    }, true);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec) {
  auto lock = lock_driver();
  Exec* found = g_execs.find(exec);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  Destructors destructors;
  release_all(found->user_objects, destructors);
  g_execs.remove(exec);
  run(lock, destructors);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuUserObjectCreate(CUuserObject* object, void* data, CUhostFn destroy, unsigned count,
                                          unsigned flags) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (object == nullptr || destroy == nullptr || count == 0 || flags != CU_USER_OBJECT_NO_DESTRUCTOR_SYNC)
    return CUDA_ERROR_INVALID_VALUE;
  *object = g_user_objects.add(UserObject{data, destroy, count});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuUserObjectRelease(CUuserObject object, unsigned count) {
  auto lock = lock_driver();
  if (g_user_objects.find(object) == nullptr || count == 0) return CUDA_ERROR_INVALID_VALUE;
  Destructors destructors;
  release_user_object(object, count, destructors);
  run(lock, destructors);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphRetainUserObject(CUgraph graph, CUuserObject object, unsigned count, unsigned flags) {
  auto lock = lock_driver();
  Graph* found = g_graphs.find(graph);
  UserObject* user_object = g_user_objects.find(object);
  if (found == nullptr || user_object == nullptr || count == 0 || (flags & ~unsigned{CU_GRAPH_USER_OBJECT_MOVE}))
    return CUDA_ERROR_INVALID_VALUE;
  if (!(flags & CU_GRAPH_USER_OBJECT_MOVE)) user_object->references += count;
  found->user_objects[object] += count;
  return CUDA_SUCCESS;
}

// ---- graph structure and kernel nodes ------------------------------------------------------

namespace {
// The driver's list idiom: NULL asks the count; otherwise up to *count entries, the rest NULL.
CUresult answer_list(const std::vector<std::pair<CUgraphNode, CUgraphNode>>& entries, bool pairs, CUgraphNode* first,
                     CUgraphNode* second, CUgraphEdgeData* edges, size_t* count) {
  if (count == nullptr || (pairs && (first == nullptr) != (second == nullptr))) return CUDA_ERROR_INVALID_VALUE;
  if (first == nullptr) {
    *count = entries.size();
    return CUDA_SUCCESS;
  }
  const size_t n = std::min(*count, entries.size());
  for (size_t i = 0; i < *count; ++i) {
    first[i] = i < n ? entries[i].first : nullptr;
    if (pairs) second[i] = i < n ? entries[i].second : nullptr;
    if (edges) edges[i] = CUgraphEdgeData{};
  }
  *count = n;
  return CUDA_SUCCESS;
}

// The nodes that depend on `node` (or, for a null one, the graph's roots), in the graph's order.
std::vector<std::pair<CUgraphNode, CUgraphNode>> nodes_after(const Graph& graph, CUgraphNode node, bool roots) {
  std::vector<std::pair<CUgraphNode, CUgraphNode>> found;
  for (CUgraphNode candidate : graph.nodes) {
    const auto& deps = g_nodes.find(candidate)->dependencies;
    if (roots ? deps.empty() : std::find(deps.begin(), deps.end(), node) != deps.end()) found.emplace_back(candidate, nullptr);
  }
  return found;
}

// The kernel of a node's parameters, prepared in the graph's context.
CUresult kernel_of(const CUDA_KERNEL_NODE_PARAMS* params, CUcontext context, KernelCall& call) {
  if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUfunction function = params->func ? params->func : reinterpret_cast<CUfunction>(params->kern);
  const unsigned dims[6] = {params->gridDimX,  params->gridDimY,  params->gridDimZ,
                            params->blockDimX, params->blockDimY, params->blockDimZ};
  return prepare_kernel(context, function, dims, params->sharedMemBytes, params->kernelParams, params->extra, call);
}
}  // namespace

DOUBLE_EXPORT CUresult cuGraphGetNodes(CUgraph graph, CUgraphNode* nodes, size_t* count) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::vector<std::pair<CUgraphNode, CUgraphNode>> entries;
  for (CUgraphNode node : found->nodes) entries.emplace_back(node, nullptr);
  return answer_list(entries, false, nodes, nullptr, nullptr, count);
}

DOUBLE_EXPORT CUresult cuGraphGetRootNodes(CUgraph graph, CUgraphNode* nodes, size_t* count) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return answer_list(nodes_after(*found, nullptr, true), false, nodes, nullptr, nullptr, count);
}

DOUBLE_EXPORT CUresult cuGraphGetEdges_v2(CUgraph graph, CUgraphNode* from, CUgraphNode* to, CUgraphEdgeData* edges,
                                          size_t* count) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::vector<std::pair<CUgraphNode, CUgraphNode>> entries;
  for (CUgraphNode node : found->nodes)
    for (CUgraphNode dependency : g_nodes.find(node)->dependencies) entries.emplace_back(dependency, node);
  return answer_list(entries, true, from, to, edges, count);
}

DOUBLE_EXPORT CUresult cuGraphNodeGetDependencies_v2(CUgraphNode node, CUgraphNode* nodes, CUgraphEdgeData* edges,
                                                     size_t* count) {
  auto lock = lock_driver();
  const GraphNode* found = g_nodes.find(node);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  std::vector<std::pair<CUgraphNode, CUgraphNode>> entries;
  for (CUgraphNode dependency : found->dependencies) entries.emplace_back(dependency, nullptr);
  return answer_list(entries, false, nodes, nullptr, edges, count);
}

DOUBLE_EXPORT CUresult cuGraphNodeGetDependentNodes_v2(CUgraphNode node, CUgraphNode* nodes, CUgraphEdgeData* edges,
                                                       size_t* count) {
  auto lock = lock_driver();
  const GraphNode* found = g_nodes.find(node);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return answer_list(nodes_after(*g_graphs.find(found->graph), node, false), false, nodes, nullptr, edges, count);
}

static CUgraphNodeType type_of(const GraphNode& node) {
  return node.function   ? CU_GRAPH_NODE_TYPE_HOST
         : node.kernel     ? CU_GRAPH_NODE_TYPE_KERNEL
         : node.event      ? CU_GRAPH_NODE_TYPE_EVENT_RECORD
         : node.work       ? CU_GRAPH_NODE_TYPE_MEMCPY
         : node.allocation ? CU_GRAPH_NODE_TYPE_MEM_ALLOC
         : node.batch      ? CU_GRAPH_NODE_TYPE_BATCH_MEM_OP
                           : CU_GRAPH_NODE_TYPE_EMPTY;
}

DOUBLE_EXPORT CUresult cuGraphNodeGetType(CUgraphNode node, CUgraphNodeType* type) {
  auto lock = lock_driver();
  const GraphNode* found = g_nodes.find(node);
  if (found == nullptr || type == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *type = type_of(*found);
  return CUDA_SUCCESS;
}

// The executable graph takes the parameters of `graph`'s nodes, which must be as many and of the
// same types, in the same order (the double's notion of the same topology); its user objects stay.
DOUBLE_EXPORT CUresult cuGraphExecUpdate_v2(CUgraphExec exec, CUgraph graph, CUgraphExecUpdateResultInfo* info) {
  auto lock = lock_driver();
  Exec* target = g_execs.find(exec);
  const Graph* source = g_graphs.find(graph);
  if (target == nullptr || source == nullptr) return CUDA_ERROR_INVALID_VALUE;
  bool same = source->nodes.size() == target->nodes.size();
  for (size_t i = 0; same && i < source->nodes.size(); ++i)
    same = type_of(*g_nodes.find(source->nodes[i])) == type_of(target->nodes[i]);
  if (info) *info = CUgraphExecUpdateResultInfo{same ? CU_GRAPH_EXEC_UPDATE_SUCCESS : CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED, nullptr, nullptr};
  if (!same) return CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
  for (size_t i = 0; i < source->nodes.size(); ++i) target->nodes[i] = *g_nodes.find(source->nodes[i]);
  return CUDA_SUCCESS;
}

namespace rgpu::cuda_double {
CUresult add_graph_node(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count, GraphNode made) {
  Graph* found = g_graphs.find(graph);
  if (node == nullptr || found == nullptr || (count > 0 && dependencies == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    const GraphNode* dependency = g_nodes.find(dependencies[i]);
    if (dependency == nullptr || dependency->graph != graph) return CUDA_ERROR_INVALID_VALUE;
  }
  made.graph = graph;
  made.dependencies.assign(dependencies, dependencies + count);
  *node = g_nodes.add(std::move(made));
  found->nodes.push_back(*node);
  return CUDA_SUCCESS;
}

GraphNode* find_graph_node(CUgraphNode node, CUcontext* context) {
  GraphNode* found = g_nodes.find(node);
  if (found != nullptr && context != nullptr) *context = g_graphs.find(found->graph)->context;
  return found;
}

GraphNode* find_exec_node(CUgraphExec exec, CUgraphNode node, CUcontext* context) {
  Exec* found = g_execs.find(exec);
  if (found == nullptr) return nullptr;
  auto at = std::find(found->origins.begin(), found->origins.end(), node);
  if (at == found->origins.end()) return nullptr;
  if (context != nullptr) *context = found->context;
  return &found->nodes[at - found->origins.begin()];
}

CUcontext graph_context(CUgraph graph) {
  const Graph* found = g_graphs.find(graph);
  return found ? found->context : nullptr;
}
}  // namespace rgpu::cuda_double

namespace {
CUresult change_dependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to, size_t count, bool add) {
  if (g_graphs.find(graph) == nullptr || (count > 0 && (from == nullptr || to == nullptr))) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i) {
    const GraphNode* before = g_nodes.find(from[i]);
    GraphNode* after = g_nodes.find(to[i]);
    if (before == nullptr || after == nullptr || before->graph != graph || after->graph != graph) return CUDA_ERROR_INVALID_VALUE;
    auto& deps = after->dependencies;
    const auto at = std::find(deps.begin(), deps.end(), from[i]);
    if (add == (at != deps.end())) return CUDA_ERROR_INVALID_VALUE;  // already there, or not there to remove
    if (add) deps.push_back(from[i]);
    else deps.erase(at);
  }
  return CUDA_SUCCESS;
}
}  // namespace

DOUBLE_EXPORT CUresult cuGraphAddKernelNode_v2(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                               size_t count, const CUDA_KERNEL_NODE_PARAMS* params) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  KernelCall call;
  if (CUresult r = kernel_of(params, found->context, call); r != CUDA_SUCCESS) return r;
  return add_graph_node(node, graph, dependencies, count, GraphNode{.kernel = std::move(call)});
}

DOUBLE_EXPORT CUresult cuGraphAddEmptyNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                           size_t count) {
  auto lock = lock_driver();
  return add_graph_node(node, graph, dependencies, count, GraphNode{});
}

DOUBLE_EXPORT CUresult cuGraphAddEventRecordNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                                 size_t count, CUevent event) {
  auto lock = lock_driver();
  if (g_events.find(event) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return add_graph_node(node, graph, dependencies, count, GraphNode{.event = event});
}

// A conditional's value here is its default, set at each launch (kernels cannot set it).
DOUBLE_EXPORT CUresult cuGraphConditionalHandleCreate(CUgraphConditionalHandle* handle, CUgraph graph, CUcontext,
                                                      unsigned default_value, unsigned flags) {
  auto lock = lock_driver();
  if (handle == nullptr || g_graphs.find(graph) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (flags != CU_GRAPH_COND_ASSIGN_DEFAULT) return CUDA_ERROR_NOT_SUPPORTED;
  *handle = reinterpret_cast<CUgraphConditionalHandle>(g_conditions.add(Condition{default_value, flags}));
  return CUDA_SUCCESS;
}

// Kernel nodes, and conditional `if` nodes whose body graphs are made with them.
DOUBLE_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                         const CUgraphEdgeData*, size_t count, CUgraphNodeParams* params) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr || params == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const CUcontext context = found->context;
  if (params->type == CU_GRAPH_NODE_TYPE_KERNEL) {
    KernelCall call;
    CUDA_KERNEL_NODE_PARAMS kernel;
    static_assert(sizeof kernel == sizeof params->kernel);
    std::memcpy(&kernel, &params->kernel, sizeof kernel);  // v3 is v2's layout
    if (CUresult r = kernel_of(&kernel, context, call); r != CUDA_SUCCESS) return r;
    return add_graph_node(node, graph, dependencies, count, GraphNode{.kernel = std::move(call)});
  }
  if (params->type != CU_GRAPH_NODE_TYPE_CONDITIONAL) return CUDA_ERROR_NOT_SUPPORTED;
  CUDA_CONDITIONAL_NODE_PARAMS& conditional = params->conditional;
  if (conditional.type != CU_GRAPH_COND_TYPE_IF) return CUDA_ERROR_NOT_SUPPORTED;
  if (conditional.size < 1 || conditional.size > 2) return CUDA_ERROR_INVALID_VALUE;
  if (g_conditions.find(reinterpret_cast<CUgraphConditionalHandle*>(conditional.handle)) == nullptr)
    return CUDA_ERROR_INVALID_VALUE;
  std::vector<CUgraph> bodies;
  for (unsigned i = 0; i < conditional.size; ++i) bodies.push_back(g_graphs.add(Graph{context, {}, {}}));
  if (CUresult r = add_graph_node(node, graph, dependencies, count, GraphNode{.condition = conditional.handle, .bodies = bodies});
      r != CUDA_SUCCESS)
    return r;
  conditional.phGraph_out = g_nodes.find(*node)->bodies.data();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                             size_t count, CUdeviceptr pointer) {
  auto lock = lock_driver();
  const Graph* found = g_graphs.find(graph);
  if (found == nullptr || device_bytes(pointer, 1, found->context) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return add_graph_node(node, graph, dependencies, count, GraphNode{});
}

DOUBLE_EXPORT CUresult cuGraphAddDependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                                              size_t count) {
  auto lock = lock_driver();
  return change_dependencies(graph, from, to, count, true);
}

DOUBLE_EXPORT CUresult cuGraphRemoveDependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to,
                                                 size_t count) {
  auto lock = lock_driver();
  return change_dependencies(graph, from, to, count, false);
}

// kernelParams point into the node's own storage, as the driver's do.
DOUBLE_EXPORT CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode node, CUDA_KERNEL_NODE_PARAMS* params) {
  auto lock = lock_driver();
  GraphNode* found = g_nodes.find(node);
  if (found == nullptr || params == nullptr || !found->kernel) return CUDA_ERROR_INVALID_VALUE;
  KernelCall& call = *found->kernel;
  *params = CUDA_KERNEL_NODE_PARAMS{};
  params->func = call.function;
  params->gridDimX = call.dims[0], params->gridDimY = call.dims[1], params->gridDimZ = call.dims[2];
  params->blockDimX = call.dims[3], params->blockDimY = call.dims[4], params->blockDimZ = call.dims[5];
  params->sharedMemBytes = call.shared;
  params->kernelParams = kernel_param_pointers(call);
  params->ctx = g_graphs.find(found->graph)->context;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphKernelNodeSetParams_v2(CUgraphNode node, const CUDA_KERNEL_NODE_PARAMS* params) {
  auto lock = lock_driver();
  GraphNode* found = g_nodes.find(node);
  if (found == nullptr || !found->kernel) return CUDA_ERROR_INVALID_VALUE;
  KernelCall call;
  if (CUresult r = kernel_of(params, g_graphs.find(found->graph)->context, call); r != CUDA_SUCCESS) return r;
  found->kernel = std::move(call);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec exec, CUgraphNode node,
                                                         const CUDA_KERNEL_NODE_PARAMS* params) {
  auto lock = lock_driver();
  Exec* found = g_execs.find(exec);
  if (found == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto at = std::find(found->origins.begin(), found->origins.end(), node);
  if (at == found->origins.end()) return CUDA_ERROR_INVALID_VALUE;
  GraphNode& made = found->nodes[at - found->origins.begin()];
  if (!made.kernel) return CUDA_ERROR_INVALID_VALUE;
  KernelCall call;
  if (CUresult r = kernel_of(params, found->context, call); r != CUDA_SUCCESS) return r;
  if (call.function != made.kernel->function) return CUDA_ERROR_INVALID_VALUE;  // the function may not change
  made.kernel = std::move(call);
  return CUDA_SUCCESS;
}

// ---- batches of memory operations ----------------------------------------------------------

namespace {
template <typename T>
bool value_reached(T current, T wanted, unsigned flags) {
  using Signed = std::make_signed_t<T>;
  switch (flags) {
    case CU_STREAM_WAIT_VALUE_GEQ: return static_cast<Signed>(current - wanted) >= 0;
    case CU_STREAM_WAIT_VALUE_EQ: return current == wanted;
    case CU_STREAM_WAIT_VALUE_AND: return (current & wanted) != 0;
    default: return static_cast<T>(~(current | wanted)) != 0;  // NOR
  }
}

// A wait holds its stream (on the stream's thread) until the memory holds the value (or is gone).
template <typename T>
void issue_wait(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream, CUdeviceptr address, T value,
                unsigned flags) {
  issue_host_function(lock, context, stream, [=](CUresult) {
    auto relock = lock_driver();
    wait_for_queued_work(relock, [&] {
      const auto* memory = reinterpret_cast<const volatile T*>(device_bytes(address, sizeof(T), context));
      return memory == nullptr || value_reached(static_cast<T>(*memory), value, flags);
    });
  }, true);
}

// A write when its stream gets there (a fault if its memory is gone by then).
template <typename T>
void issue_write(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream, CUdeviceptr address, T value) {
  issue(lock, context, stream, [=] {
    void* memory = device_bytes(address, sizeof value, context);
    if (memory == nullptr) return CUDA_ERROR_ILLEGAL_ADDRESS;
    std::memcpy(memory, &value, sizeof value);
    return CUDA_SUCCESS;
  });
}
}  // namespace

namespace rgpu::cuda_double {
// Waits and writes of 32 and 64 bits on the context's device memory; flushes and barriers have
// nothing to do.
CUresult check_batch(CUcontext context, const CUstreamBatchMemOpParams* ops, unsigned count) {
  if (ops == nullptr || count == 0) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < count; ++i) {
    const auto type = ops[i].operation;
    const bool wide = type == CU_STREAM_MEM_OP_WAIT_VALUE_64 || type == CU_STREAM_MEM_OP_WRITE_VALUE_64;
    if (type == CU_STREAM_MEM_OP_FLUSH_REMOTE_WRITES || type == CU_STREAM_MEM_OP_BARRIER) continue;
    if (type != CU_STREAM_MEM_OP_WAIT_VALUE_32 && type != CU_STREAM_MEM_OP_WRITE_VALUE_32 && !wide)
      return CUDA_ERROR_INVALID_VALUE;
    if (device_bytes(ops[i].waitValue.address, wide ? 8 : 4, context) == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if ((type == CU_STREAM_MEM_OP_WAIT_VALUE_32 || type == CU_STREAM_MEM_OP_WAIT_VALUE_64) && ops[i].waitValue.flags > 3)
      return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

void issue_batch(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream,
                 const std::vector<CUstreamBatchMemOpParams>& ops) {
  for (const CUstreamBatchMemOpParams& op : ops) {
    const CUdeviceptr address = op.writeValue.address;
    switch (op.operation) {
      case CU_STREAM_MEM_OP_WRITE_VALUE_32: issue_write(lock, context, stream, address, op.writeValue.value); break;
      case CU_STREAM_MEM_OP_WRITE_VALUE_64: issue_write(lock, context, stream, address, op.writeValue.value64); break;
      case CU_STREAM_MEM_OP_WAIT_VALUE_32:
        issue_wait(lock, context, stream, address, op.waitValue.value, op.waitValue.flags);
        break;
      case CU_STREAM_MEM_OP_WAIT_VALUE_64:
        issue_wait(lock, context, stream, address, op.waitValue.value64, op.waitValue.flags);
        break;
      default: break;
    }
  }
}
}  // namespace rgpu::cuda_double

// In stream order; not captured.
DOUBLE_EXPORT CUresult cuStreamBatchMemOp_v2(CUstream stream, unsigned count, CUstreamBatchMemOpParams* ops,
                                             unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_batch(context, ops, count); r != CUDA_SUCCESS) return r;
  if (capturing(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  issue_batch(lock, context, stream, {ops, ops + count});
  return CUDA_SUCCESS;
}
