// The test double's streams and events. Work runs when it is issued, so a stream is always
// idle and an event completes when it is recorded; what is left to report is the error the
// stream's context hit.
#include <chrono>
#include <map>
#include <optional>
#include <vector>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
using Clock = std::chrono::steady_clock;

// Stream capture: the double captures only event records (as event record nodes); the
// capture's dependencies are the last node captured.
struct Capture {
  cuuint64_t id = 0;
  CUgraph graph = nullptr;
  std::vector<CUgraphNode> dependencies;
  std::vector<CUgraphEdgeData> edges;
};
struct Stream {
  CUcontext context;
  unsigned flags;
  std::optional<Capture> capture;
};
struct Graph {
  std::vector<CUgraphNode> nodes;
};
struct Event {
  CUcontext context;
  unsigned flags;
  bool recorded = false;
  Clock::time_point at{};
};
Registry<CUstream, Stream> g_streams;
Registry<CUevent, Event> g_events;
Registry<CUgraph, Graph> g_graphs;
Registry<CUgraphNode, CUevent> g_nodes;
cuuint64_t g_last_capture_id = 0;

bool is_default(CUstream stream) {
  return stream == nullptr || stream == CU_STREAM_LEGACY || stream == CU_STREAM_PER_THREAD;
}

// The error of the context the stream belongs to (the current one for the default stream).
CUresult stream_state(CUstream stream) {
  CUcontext current;
  if (is_default(stream)) return current_context(current);
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Stream* found = g_streams.find(stream);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return find_context(found->context)->sticky;
}

CUresult event_state(CUevent event) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Event* found = g_events.find(event);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return find_context(found->context)->sticky;
}
}  // namespace

CUresult check_stream(CUstream stream, CUcontext context) {
  if (is_default(stream)) return CUDA_SUCCESS;
  const Stream* found = g_streams.find(stream);
  return found != nullptr && found->context == context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

void release_streams_and_events_of(CUcontext context) {
  g_streams.remove_if([&](const Stream& stream) { return stream.context == context; });
  g_events.remove_if([&](const Event& event) { return event.context == context; });
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
  if (is_default(stream)) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  g_streams.remove(stream);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  auto lock = lock_driver();
  release_pool_memory();
  return stream_state(stream);
}

DOUBLE_EXPORT CUresult cuStreamQuery(CUstream stream) {
  auto lock = lock_driver();
  return stream_state(stream);
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
  if (Stream* s = is_default(stream) ? nullptr : g_streams.find(stream); s != nullptr && s->capture) {
    const CUgraphNode node = g_nodes.add(event);
    g_graphs.find(s->capture->graph)->nodes.push_back(node);
    s->capture->dependencies = {node};
    s->capture->edges = {CUgraphEdgeData{}};
    return CUDA_SUCCESS;
  }
  found->recorded = true;
  found->at = Clock::now();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuEventQuery(CUevent event) {
  auto lock = lock_driver();
  return event_state(event);
}

DOUBLE_EXPORT CUresult cuEventSynchronize(CUevent event) {
  auto lock = lock_driver();
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
  if (is_default(stream)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
  if (mode > CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_ERROR_INVALID_VALUE;
  Stream& found = *g_streams.find(stream);
  if (found.capture) return CUDA_ERROR_ILLEGAL_STATE;
  found.capture = Capture{++g_last_capture_id, g_graphs.add(Graph{}), {}, {}};
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Stream* found = is_default(stream) ? nullptr : g_streams.find(stream);
  if (found == nullptr || !found->capture) return CUDA_ERROR_ILLEGAL_STATE;
  *graph = found->capture->graph;
  found->capture.reset();
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuGraphDestroy(CUgraph graph) {
  auto lock = lock_driver();
  Graph* found = g_graphs.find(graph);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  for (CUgraphNode node : found->nodes) g_nodes.remove(node);
  g_graphs.remove(graph);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                 CUgraph* graph, const CUgraphNode** dependencies,
                                                 const CUgraphEdgeData** edges, size_t* count) {
  auto lock = lock_driver();
  if (CUresult r = stream_state(stream); r != CUDA_SUCCESS) return r;
  if (status == nullptr || (edges != nullptr && dependencies == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  const Stream* found = is_default(stream) ? nullptr : g_streams.find(stream);
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
