// The test double's streams, events, stream capture and graphs. Work runs when it is issued
// unless a host function holds its stream up (stream_order.cpp), so a stream is idle but for
// that; an event completes when the stream reaches its record. Capture records event records and
// host functions as nodes, which a graph's launch issues in order; user objects live as long as
// the graphs and executable graphs that hold them.
#include <chrono>
#include <map>
#include <optional>
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
};
struct Stream {
  CUcontext context;
  unsigned flags;
  std::optional<Capture> capture;
};
// A node: an event record, a host function when `function` is set, or device work (a kernel).
struct Node {
  CUevent event = nullptr;
  CUhostFn function = nullptr;
  void* data = nullptr;
  StreamWork work = nullptr;
};
using UserObjectCounts = std::map<CUuserObject, unsigned>;
struct Graph {
  CUcontext context;  // graphs go with the context they were made in
  std::vector<CUgraphNode> nodes;
  UserObjectCounts user_objects;
};
struct Exec {
  CUcontext context;
  std::vector<Node> nodes;
  UserObjectCounts user_objects;
};
struct Event {
  CUcontext context;
  unsigned flags;
  bool recorded = false;
  Clock::time_point at{};
  uint64_t records_pending = 0;  // records issued whose stream has not reached them yet
};
struct UserObject {
  void* data;
  CUhostFn destroy;
  unsigned references;
};
Registry<CUstream, Stream> g_streams;
Registry<CUevent, Event> g_events;
Registry<CUgraph, Graph> g_graphs;
Registry<CUgraphNode, Node> g_nodes;
Registry<CUgraphExec, Exec> g_execs;
Registry<CUuserObject, UserObject> g_user_objects;
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
void capture_node(Stream& stream, Node node) {
  const CUgraphNode handle = g_nodes.add(node);
  g_graphs.find(stream.capture->graph)->nodes.push_back(handle);
  stream.capture->dependencies = {handle};
  stream.capture->edges = {CUgraphEdgeData{}};
}

// The event's record, completed when the stream reaches it.
void issue_record(std::unique_lock<std::mutex>& lock, CUcontext context, CUevent event, CUstream stream) {
  ++g_events.find(event)->records_pending;
  issue(lock, context, stream, [event] {
    if (Event* found = g_events.find(event)) {
      --found->records_pending;
      found->recorded = true;
      found->at = Clock::now();
    }
    return CUDA_SUCCESS;
  });
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

bool capture_work(CUstream stream, const StreamWork& work) {
  Stream* s = capturing(stream);
  if (s == nullptr) return false;
  capture_node(*s, Node{.work = work});
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

bool unsafe_during_capture(CUcontext context) {
  bool refused = false;
  for (CUstream handle : g_streams.handles_if([&](const Stream& s) {
         return s.context == context && s.capture && s.capture->mode == CU_STREAM_CAPTURE_MODE_GLOBAL;
       })) {
    g_streams.find(handle)->capture->invalidated = true;
    refused = true;
  }
  return refused;
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

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
    capture_node(*s, Node{.event = event});
    return CUDA_SUCCESS;
  }
  issue_record(lock, context, event, stream);
  return CUDA_SUCCESS;
}

// The stream's later work waits until the event's records issued so far have completed.
DOUBLE_EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  const Event* found = g_events.find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (flags & ~unsigned{CU_EVENT_WAIT_EXTERNAL}) return CUDA_ERROR_INVALID_VALUE;
  if (capturing(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (found->records_pending == 0) return CUDA_SUCCESS;
  issue_host_function(lock, context, stream, [event](CUresult) {
    auto relock = lock_driver();
    wait_for_queued_work(relock, [&] {
      const Event* waited = g_events.find(event);
      return waited == nullptr || waited->records_pending == 0;
    });
  }, true);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuEventQuery(CUevent event) {
  auto lock = lock_driver();
  if (CUresult r = event_state(event); r != CUDA_SUCCESS) return r;
  return g_events.find(event)->records_pending == 0 ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

DOUBLE_EXPORT CUresult cuEventSynchronize(CUevent event) {
  auto lock = lock_driver();
  if (CUresult r = event_state(event); r != CUDA_SUCCESS) return r;
  wait_for_queued_work(lock, [&] {
    const Event* found = g_events.find(event);
    return found == nullptr || found->records_pending == 0;
  });
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
    capture_node(*s, Node{.function = function, .data = data});
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

// Nodes run in the order they were added, whatever their dependencies.
DOUBLE_EXPORT CUresult cuGraphAddHostNode(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies,
                                          size_t count, const CUDA_HOST_NODE_PARAMS* params) {
  auto lock = lock_driver();
  Graph* found = g_graphs.find(graph);
  if (node == nullptr || found == nullptr || params == nullptr || params->fn == nullptr ||
      (count > 0 && dependencies == nullptr))
    return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; ++i)
    if (g_nodes.find(dependencies[i]) == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *node = g_nodes.add(Node{.function = params->fn, .data = params->userData});
  found->nodes.push_back(*node);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long flags) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  const Graph* found = g_graphs.find(graph);
  if (exec == nullptr || found == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  Exec made{context, {}, found->user_objects};
  for (CUgraphNode node : found->nodes) made.nodes.push_back(*g_nodes.find(node));
  for (const auto& [object, count] : made.user_objects) g_user_objects.find(object)->references += count;
  *exec = g_execs.add(std::move(made));
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  const Exec* found = g_execs.find(exec);
  if (found == nullptr || found->context != context) return CUDA_ERROR_INVALID_HANDLE;
  // Issuing may wait, and the executable graph go meanwhile: the launch holds what it needs. Its
  // user objects stay until the launch has run, as the driver's do.
  const std::vector<Node> nodes = found->nodes;
  const UserObjectCounts held = found->user_objects;
  for (const auto& [object, count] : held) g_user_objects.find(object)->references += count;
  for (const Node& node : nodes) {
    if (node.function != nullptr) {
      issue_host_function(lock, context, stream, [node](CUresult) { node.function(node.data); }, false);
    } else if (node.work) {
      issue(lock, context, stream, node.work);
    } else if (g_events.find(node.event) != nullptr) {
      issue_record(lock, context, node.event, stream);
    }
  }
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
