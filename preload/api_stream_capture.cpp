// Stream capture: its start, and queries whose answers include arrays the driver owns (the
// capture's current dependency nodes and their edge data). The server's driver answers; the arrays are kept here,
// per thread and stream, until that thread asks for them on that stream again (a stream that is
// not capturing keeps nothing, so a destroyed stream leaves nothing behind unless it was).
#include <map>
#include <vector>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "host_function_runner.hpp"

namespace rgpu::cuda {

namespace {
struct CaptureDependencies {
  std::vector<CUgraphNode> nodes;
  std::vector<CUgraphEdgeData> edges;
};

thread_local std::map<CUstream, CaptureDependencies> t_dependencies;

CUresult capture_info(uint32_t variant, CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                      CUgraph* graph, const CUgraphNode** dependencies, const CUgraphEdgeData** edge_data,
                      size_t* count) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (status == nullptr || (edge_data != nullptr && dependencies == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  if (!capture_under_way()) {
    // No capture this process began is under way, so no stream is capturing (libraries such as
    // cuBLAS ask before every call): answered here, without a round trip.
    *status = CU_STREAM_CAPTURE_STATUS_NONE;
    if (graph) *graph = nullptr;
    if (count) *count = 0;
    if (dependencies) *dependencies = nullptr;
    if (edge_data) *edge_data = nullptr;
    t_dependencies.erase(stream);
    return CUDA_SUCCESS;
  }
  CallBuilder call(variant);
  call.out_mask(kCaptureStatus | (id ? kCaptureId : 0u) | (graph ? kCaptureGraph : 0u) |
                (dependencies ? kCaptureDependencies : 0u) | (edge_data ? kCaptureEdgeData : 0u) |
                (count ? kCaptureCount : 0u));
  call.in(stream);
  return call_sync(call, [&](WireReader& reader) {
    *status = static_cast<CUstreamCaptureStatus>(reader.get<uint32_t>());
    const cuuint64_t capture_id = reader.get<uint64_t>();
    const auto capture_graph = reinterpret_cast<CUgraph>(reader.get<uint64_t>());
    const uint64_t n = reader.get<uint64_t>();
    const uint8_t lists = reader.get<uint8_t>();
    CaptureDependencies found;
    for (uint64_t i = 0; (lists & kCaptureListsNodes) && i < n; ++i)
      found.nodes.push_back(reinterpret_cast<CUgraphNode>(reader.get<uint64_t>()));
    for (uint64_t i = 0; (lists & kCaptureListsEdges) && i < n; ++i) found.edges.push_back(reader.get<CUgraphEdgeData>());
    if (id) *id = capture_id;
    if (graph) *graph = capture_graph;
    if (count) *count = n;
    if (dependencies == nullptr) return;
    if (found.nodes.empty() && found.edges.empty()) {  // not capturing, or nothing yet: nothing to keep
      t_dependencies.erase(stream);
      *dependencies = nullptr;
      if (edge_data) *edge_data = nullptr;
      return;
    }
    auto& kept = t_dependencies[stream];
    kept = std::move(found);
    *dependencies = kept.nodes.empty() ? nullptr : kept.nodes.data();
    if (edge_data) *edge_data = kept.edges.empty() ? nullptr : kept.edges.data();
  });
}
// A capture may take copies between the device and this process's memory, which the host
// function thread carries out at each launch of the graph: it runs before the capture starts.
CUresult begin_capture(uint32_t function, CUstream stream, const CUstreamCaptureMode* mode) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (!start_host_function_runner()) return kLinkLost;
  CallBuilder call(function);
  call.in(stream);
  if (mode) call.in(*mode);
  const CUresult result = call_sync(call, nullptr);
  capture_changed(true, result);
  return result;
}
CUresult begin_capture_to_graph(uint32_t function, CUstream stream, CUgraph graph, const CUgraphNode* dependencies,
                                const CUgraphEdgeData* edges, size_t count, CUstreamCaptureMode mode) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if ((count > 0 && dependencies == nullptr) || count > kMaxGraphList) return CUDA_ERROR_INVALID_VALUE;
  if (!start_host_function_runner()) return kLinkLost;
  CallBuilder call(function);
  WireWriter& w = call.writer();
  w.put(reinterpret_cast<uint64_t>(stream)).put(reinterpret_cast<uint64_t>(graph)).put(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; ++i) w.put(reinterpret_cast<uint64_t>(dependencies[i]));
  w.put<uint8_t>(edges != nullptr && count > 0);
  for (size_t i = 0; edges != nullptr && i < count; ++i) w.put(edges[i]);
  w.put<uint32_t>(mode);
  const CUresult result = call_sync(call, nullptr);
  capture_changed(true, result);
  return result;
}
}  // namespace

RGPU_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream stream, CUgraph graph, const CUgraphNode* dependencies,
                                                 const CUgraphEdgeData* edges, size_t count, CUstreamCaptureMode mode) {
  return begin_capture_to_graph(FN_cuStreamBeginCaptureToGraph, stream, graph, dependencies, edges, count, mode);
}
RGPU_EXPORT CUresult cuStreamBeginCaptureToGraph_ptsz(CUstream stream, CUgraph graph, const CUgraphNode* dependencies,
                                                      const CUgraphEdgeData* edges, size_t count,
                                                      CUstreamCaptureMode mode) {
  return begin_capture_to_graph(FN_cuStreamBeginCaptureToGraph_ptsz, stream, graph, dependencies, edges, count, mode);
}

RGPU_EXPORT CUresult cuStreamBeginCapture(CUstream stream) { return begin_capture(FN_cuStreamBeginCapture, stream, nullptr); }
RGPU_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream stream) {
  return begin_capture(FN_cuStreamBeginCapture_ptsz, stream, nullptr);
}
RGPU_EXPORT CUresult cuStreamBeginCapture_v2(CUstream stream, CUstreamCaptureMode mode) {
  return begin_capture(FN_cuStreamBeginCapture_v2, stream, &mode);
}
RGPU_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream stream, CUstreamCaptureMode mode) {
  return begin_capture(FN_cuStreamBeginCapture_v2_ptsz, stream, &mode);
}

RGPU_EXPORT CUresult cuStreamIsCapturing(CUstream stream, CUstreamCaptureStatus* status) {
  return capture_info(FN_cuStreamGetCaptureInfo_v2, stream, status, nullptr, nullptr, nullptr, nullptr, nullptr);
}
RGPU_EXPORT CUresult cuStreamIsCapturing_ptsz(CUstream stream, CUstreamCaptureStatus* status) {
  return capture_info(FN_cuStreamGetCaptureInfo_v2_ptsz, stream, status, nullptr, nullptr, nullptr, nullptr, nullptr);
}

RGPU_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                               CUgraph* graph, const CUgraphNode** dependencies, size_t* count) {
  return capture_info(FN_cuStreamGetCaptureInfo_v2, stream, status, id, graph, dependencies, nullptr, count);
}

RGPU_EXPORT CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                    CUgraph* graph, const CUgraphNode** dependencies, size_t* count) {
  return capture_info(FN_cuStreamGetCaptureInfo_v2_ptsz, stream, status, id, graph, dependencies, nullptr, count);
}

RGPU_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                               CUgraph* graph, const CUgraphNode** dependencies,
                                               const CUgraphEdgeData** edge_data, size_t* count) {
  return capture_info(FN_cuStreamGetCaptureInfo_v3, stream, status, id, graph, dependencies, edge_data, count);
}

RGPU_EXPORT CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream stream, CUstreamCaptureStatus* status, cuuint64_t* id,
                                                    CUgraph* graph, const CUgraphNode** dependencies,
                                                    const CUgraphEdgeData** edge_data, size_t* count) {
  return capture_info(FN_cuStreamGetCaptureInfo_v3_ptsz, stream, status, id, graph, dependencies, edge_data, count);
}

}  // namespace rgpu::cuda
