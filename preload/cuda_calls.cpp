// Sending calls to the server: the generic path the generated stubs use.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "api_state.hpp"
#include "call_stats.hpp"
#include "cuda_client.hpp"
#include "daemon_link.hpp"
#include "device_address_space.hpp"
#include "host_function_runner.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
std::atomic<uint64_t> g_next_request{1};
std::atomic<uint32_t> g_next_sequence{1};

std::mutex g_ranges_mutex;
std::map<CUdeviceptr, DeviceRange>& device_ranges() {  // by base address
  static auto* value = new std::map<CUdeviceptr, DeviceRange>;  // never destroyed: see api_state.hpp
  return *value;
}

std::mutex g_logged_mutex;
std::set<std::string>& logged_names() {
  static auto* value = new std::set<std::string>;  // never destroyed: see api_state.hpp
  return *value;
}

// Fills the header fields known only at send time. A call outside the issue order takes no
// sequence (0).
void stamp(CallBuilder& call, DaemonLink& link, bool ordered = true) {
  CallHeader header;
  std::memcpy(&header, call.payload().data(), sizeof header);
  header.thread = link.thread_id();
  header.context = reinterpret_cast<uint64_t>(current_context());
  header.sequence = ordered ? g_next_sequence.fetch_add(1) : 0;
  std::memcpy(call.payload().data(), &header, sizeof header);
}

// The link for a call to the server, or why there is none. A host function may not call CUDA,
// as with the driver (it would wait for the stream that waits for it).
CUresult link_for_call(DaemonLink*& link) {
  if (in_host_function()) return CUDA_ERROR_NOT_PERMITTED;
  link = DaemonLink::for_this_thread();
  return link ? CUDA_SUCCESS : kLinkLost;
}

// RGPU_LOG=trace: every call this process sends, in order.
void trace_call(uint32_t function, const char* how) {
  if (static_cast<int>(LogLevel::Trace) < static_cast<int>(log_level())) return;
  const char* name = function_name(function) ?: rgpu_call_name(function);
  LOG_TRACE("%s %s", how, name ? name : "call");
}

CUresult report_deferred(const ReplyHeader& header) {
  if (header.deferred_function == 0) return CUDA_SUCCESS;
  const char* name = function_name(header.deferred_function) ?: rgpu_call_name(header.deferred_function);
  LOG_WARN("an earlier asynchronous %s failed with %s", name ? name : "call",
           error_name_of(static_cast<CUresult>(header.deferred_result)));
  return static_cast<CUresult>(header.deferred_result);
}
}  // namespace

CallBuilder::CallBuilder(uint32_t function) : function_(function) {
  writer_.buffer().reserve(256);
  CallHeader header;
  header.function = function;
  writer_.put(header);
}

void CallBuilder::out_mask(uint32_t mask) {
  CallHeader header;
  std::memcpy(&header, payload().data(), sizeof header);
  header.out_mask = mask;
  std::memcpy(payload().data(), &header, sizeof header);
}

CUresult finish_reply(std::span<const uint8_t> answer, const ReplyReader& read_outs) {
  try {
    WireReader reader(answer, "CUDA reply");
    const ReplyHeader header = reader.get<ReplyHeader>();
    const CUresult deferred = report_deferred(header);
    const auto result = static_cast<CUresult>(header.result);
    if (result == CUDA_SUCCESS && read_outs) read_outs(reader);
    return result != CUDA_SUCCESS ? result : deferred;
  } catch (const WireError& e) {
    LOG_ERROR("malformed reply from the server: %s", e.what());
    return CUDA_ERROR_UNKNOWN;
  }
}

namespace {
CUresult exchange_on(DaemonLink& link, CallBuilder& call, const ReplyReader& read_outs, const RingSpec* spec,
                     bool ordered) {
  CallTimer timer(call.function());
  trace_call(call.function(), "call");
  stamp(call, link, ordered);
  const uint64_t id = g_next_request.fetch_add(1);
  if (CUresult r = link.send(id, 0, call.payload(), spec); r != CUDA_SUCCESS) return r;
  std::vector<uint8_t> storage;
  std::span<const uint8_t> answer;
  if (CUresult r = link.wait(id, storage, answer); r != CUDA_SUCCESS) return r;
  const CUresult result = finish_reply(answer, read_outs);
  if (result != CUDA_SUCCESS) {  // RGPU_LOG=debug shows which calls a failing program made fail
    const char* name = function_name(call.function()) ?: rgpu_call_name(call.function());
    LOG_DEBUG("%s: %s", name ? name : "call", error_name_of(result));
  }
  return result;
}
}  // namespace

CUresult exchange(CallBuilder& call, const ReplyReader& read_outs, const RingSpec* spec) {
  DaemonLink* link = nullptr;
  if (CUresult r = link_for_call(link); r != CUDA_SUCCESS) return r;
  return exchange_on(*link, call, read_outs, spec, true);
}

CUresult exchange_unordered(CallBuilder& call, const ReplyReader& read_outs) {
  DaemonLink* link = DaemonLink::for_this_thread();
  if (link == nullptr) return kLinkLost;
  return exchange_on(*link, call, read_outs, nullptr, false);
}

CUresult send_call(CallBuilder& call, const RingSpec* spec, uint64_t& request_id) {
  DaemonLink* link = nullptr;
  if (CUresult r = link_for_call(link); r != CUDA_SUCCESS) return r;
  stamp(call, *link);
  count_call(call.function(), false, 0);  // its answer is waited for apart (chunked copies)
  trace_call(call.function(), "sent");
  request_id = g_next_request.fetch_add(1);
  return link->send(request_id, 0, call.payload(), spec);
}

CUresult call_sync(CallBuilder& call, const ReplyReader& read_outs) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  return exchange(call, read_outs, nullptr);
}

CUresult send_pipelined(CallBuilder& call, const RingSpec* spec) {
  DaemonLink* link = nullptr;
  if (CUresult r = link_for_call(link); r != CUDA_SUCCESS) return r;
  // While a capture is under way a call may fail for the capture's sake (an unsafe call, an
  // invalidated capture): its caller gets that answer, as from the driver, rather than the next
  // call of the process.
  if (spec == nullptr && capture_under_way()) return exchange_on(*link, call, nullptr, nullptr, true);
  stamp(call, *link);
  count_call(call.function(), false, 0);
  trace_call(call.function(), "pipelined");
  return link->send(g_next_request.fetch_add(1), kFrameNoReply, call.payload(), spec);
}

CUresult call_pipelined(CallBuilder& call) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  return send_pipelined(call, nullptr);
}

CUresult not_supported(const char* name) {
  std::lock_guard lock(g_logged_mutex);
  if (logged_names().insert(name).second)
    LOG_WARN("%s is not supported by RGPU; returning CUDA_ERROR_NOT_SUPPORTED", name);
  return CUDA_ERROR_NOT_SUPPORTED;
}

void note_device_range(CUdeviceptr base, size_t bytes) {
  if (!reserve_device_addresses(base, bytes)) {
    std::lock_guard lock(g_logged_mutex);
    if (logged_names().insert("rgpu.address-overlap").second)
      LOG_WARN("device memory at 0x%llx overlaps this process's own memory: copies that name such addresses "
               "with cuMemcpy (unified addressing) may be taken for host copies",
               static_cast<unsigned long long>(base));
  }
  std::lock_guard lock(g_ranges_mutex);
  auto [it, inserted] = device_ranges().try_emplace(base, DeviceRange{base, bytes, current_context()});
  if (!inserted) {  // the same address again (a global asked for twice): keep one reservation
    release_device_addresses(base, it->second.bytes);
    it->second = DeviceRange{base, bytes, current_context()};
  }
}

void forget_device_range(CUdeviceptr base) {
  std::lock_guard lock(g_ranges_mutex);
  auto it = device_ranges().find(base);
  if (it == device_ranges().end()) return;
  release_device_addresses(base, it->second.bytes);
  device_ranges().erase(it);
}

void forget_device_ranges(CUdeviceptr base, size_t bytes) {
  std::lock_guard lock(g_ranges_mutex);
  for (auto it = device_ranges().lower_bound(base); it != device_ranges().end() && it->first - base < bytes;) {
    release_device_addresses(it->first, it->second.bytes);
    it = device_ranges().erase(it);
  }
}

bool find_device_range(CUdeviceptr pointer, DeviceRange& range) {
  std::lock_guard lock(g_ranges_mutex);
  auto it = device_ranges().upper_bound(pointer);
  if (it == device_ranges().begin()) return false;
  --it;
  if (pointer >= it->second.base + it->second.bytes) return false;
  range = it->second;
  return true;
}

}  // namespace rgpu::cuda
