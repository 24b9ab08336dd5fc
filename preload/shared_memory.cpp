// Managed and mapped host memory: host copies kept in step with their device allocations (shared_memory.hpp).
#include "shared_memory.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "api_state.hpp"
#include "call_stats.hpp"
#include "cuda_client.hpp"
#include "device_address_space.hpp"
#include "log.hpp"
#include "mapped_memory_sync.hpp"
#include "written_pages.hpp"

namespace rgpu::cuda {

namespace {
constexpr size_t kPage = 4096;
constexpr size_t kMaxRun = 8u << 20;  // host writes travel in copies of at most this much
constexpr size_t kGranule = 16;       // and are found by comparing this many bytes at a time;
// changes closer than this travel in one copy with the unchanged bytes between them (the device
// has those already): a host that writes every few bytes sends a few large copies, not many tiny ones.
constexpr size_t kMaxGap = 4096;

size_t page_round(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

struct Entry {
  SharedAllocation allocation;
  bool watched = false;           // the kernel tracks the host's writes to the host copy
  std::vector<uint8_t> snapshot;  // the contents both copies last agreed on
  uint8_t* host() const { return reinterpret_cast<uint8_t*>(allocation.host); }
  // The whole pages around the host copy, which the kernel's tracking watches.
  uint8_t* pages() const { return reinterpret_cast<uint8_t*>(allocation.host / kPage * kPage); }
  size_t pages_length() const { return page_round(allocation.host + allocation.bytes) - allocation.host / kPage * kPage; }
};

std::mutex g_mutex;  // guards the entries; one transfer (sending or fetching) at a time
std::map<CUdeviceptr, Entry>& entries() {  // by base address
  static auto* value = new std::map<CUdeviceptr, Entry>;  // never destroyed: see api_state.hpp
  return *value;
}
std::atomic<size_t> g_count{0};          // entries, read without the lock by the hooks
std::atomic<uint64_t> g_device_work{0};  // device work sent while something was shared
uint64_t g_fetched_at = 0;               // g_device_work when the device copies were last fetched
std::atomic<int> g_captures{0};          // stream captures under way in this process

CUresult server_allocate(SharedKind kind, size_t bytes, unsigned int flags, CUdeviceptr& pointer) {
  CallBuilder call(kind == SharedKind::Managed ? FN_cuMemAllocManaged : FN_cuMemAlloc_v2);
  call.out_mask(1u);
  call.in(bytes);
  if (kind == SharedKind::Managed) call.in(flags);
  return call_sync(call, [&](WireReader& reader) { pointer = take_out<CUdeviceptr>(reader); });
}

void server_free(CUdeviceptr pointer) {
  CallBuilder call(FN_cuMemFree_v2);
  call.in(pointer);
  call_pipelined(call);
}

// Both copies start as zeros, so that they agree before either side writes.
CUresult server_zero(CUdeviceptr pointer, size_t bytes) {
  CallBuilder call(FN_cuMemsetD8_v2);
  call.in(pointer);
  call.in(static_cast<unsigned char>(0));
  call.in(bytes);
  return call_pipelined(call);
}

// Sends the bytes the host changed since the copies last agreed. The kernel's tracking says which
// pages to look at; the snapshot says which bytes in them changed, so that bytes the device wrote
// meanwhile are not overwritten (a page may hold other data than the allocation, and the host may
// write some bytes of a page while a kernel writes others).
CUresult send_host_writes(Entry& e) {
  const SharedAllocation& a = e.allocation;
  CUresult result = CUDA_SUCCESS;
  auto send = [&](size_t offset, size_t length) {
    if (result != CUDA_SUCCESS) return;
    LOG_TRACE("shared memory 0x%llx: sending %zu bytes at %zu", static_cast<unsigned long long>(a.base), length, offset);
    count_work("shared memory: host writes sent (bytes)", length);
    result = copy_to_device(FN_cuMemcpyHtoD_v2, a.base + offset, e.host() + offset, length, nullptr);
  };
  auto compare = [&](size_t offset, size_t length) {
    for_each_changed_run(e.host() + offset, e.snapshot.data() + offset, length, kGranule, kMaxRun,
                         [&](size_t at, size_t n) { send(offset + at, n); }, kMaxGap);
  };
  // Written pages, as offsets into the allocation (the first and last page may reach beyond it).
  const size_t lead = e.host() - e.pages();
  auto compare_pages = [&](size_t offset, size_t length) {
    const size_t end = std::min(offset + length, lead + a.bytes);
    if (end <= lead) return;
    offset = offset > lead ? offset - lead : 0;
    compare(offset, end - lead - offset);
  };
  if (e.watched && WrittenPages::get().take(e.pages(), e.pages_length(), compare_pages)) return result;
  e.watched = false;  // the kernel's tracking failed: compare everything from now on
  compare(0, a.bytes);
  return result;
}

// Fetches go on a non-blocking stream of this process's own (one per context), so that a fetch waits
// for nothing but itself: on the legacy stream it would wait for all work of the blocking streams.
// Null when there is none (the legacy stream is used then).
std::map<CUcontext, CUstream>& fetch_streams() {  // under g_mutex
  static auto* value = new std::map<CUcontext, CUstream>;  // never destroyed: see api_state.hpp
  return *value;
}
CUstream fetch_stream() {
  const CUcontext current = current_context();
  if (current == nullptr) return nullptr;
  auto& streams = fetch_streams();
  if (auto it = streams.find(current); it != streams.end()) return it->second;
  CUstream stream = nullptr;
  if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) return nullptr;
  return streams[current] = stream;
}

// Replaces the host copy with the device's as it is now. Work the application has not waited for
// may still be writing it: the host may not rely on such bytes before it waits, natively either.
CUresult fetch_device_copy(Entry& e) {
  const SharedAllocation& a = e.allocation;
  LOG_TRACE("shared memory 0x%llx: fetching %zu bytes", static_cast<unsigned long long>(a.base), a.bytes);
  count_work("shared memory: device copies fetched (bytes)", a.bytes);
  CUstream stream = fetch_stream();
  CUresult r = stream ? copy_from_device(FN_cuMemcpyDtoHAsync_v2, e.host(), a.base, a.bytes, stream)
                      : copy_from_device(FN_cuMemcpyDtoH_v2, e.host(), a.base, a.bytes, nullptr);
  if (r != CUDA_SUCCESS) return r;
  std::memcpy(e.snapshot.data(), e.host(), a.bytes);
  // The copy's own writes are not the application's.
  if (e.watched && !WrittenPages::get().take(e.pages(), e.pages_length(), [](size_t, size_t) {})) e.watched = false;
  return CUDA_SUCCESS;
}
}  // namespace

CUresult allocate_shared(CUdeviceptr* pointer, size_t bytes, SharedKind kind, unsigned int flags) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (pointer == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  const size_t rounded = page_round(bytes);
  CUdeviceptr server = 0;
  if (CUresult r = server_allocate(kind, rounded, flags, server); r != CUDA_SUCCESS) return r;
  CUdeviceptr base = server;
  if (server % kPage != 0) {  // the host copy needs whole pages of its own: a page more, aligned
    server_free(server);
    if (CUresult r = server_allocate(kind, rounded + kPage, flags, server); r != CUDA_SUCCESS) return r;
    base = (server + kPage - 1) / kPage * kPage;
  }
  note_device_range(base, bytes);
  if (!make_host_accessible(base, rounded)) {
    LOG_WARN("%s of %zu bytes: the device address 0x%llx is in use by this process's own memory, so the host "
             "copy cannot live there", kind == SharedKind::Managed ? "managed memory" : "mapped host memory", bytes,
             static_cast<unsigned long long>(base));
    forget_device_range(base);
    server_free(server);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  if (CUresult r = server_zero(server, rounded + (base - server)); r != CUDA_SUCCESS) {
    make_host_inaccessible(base, rounded);
    forget_device_range(base);
    server_free(server);
    return r;
  }
  Entry e;
  e.allocation = {base, base, server, bytes, kind, flags};
  e.snapshot.assign(bytes, 0);
  e.watched = WrittenPages::get().watch(e.pages(), e.pages_length());
  {
    std::lock_guard lock(g_mutex);
    entries()[base] = std::move(e);
    g_count.fetch_add(1);
  }
  *pointer = base;
  return CUDA_SUCCESS;
}

CUresult register_shared(void* host, size_t bytes, unsigned int flags, CUdeviceptr* device) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (host == nullptr || bytes == 0 || device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUdeviceptr base = 0;
  if (CUresult r = server_allocate(SharedKind::RegisteredHost, bytes, 0, base); r != CUDA_SUCCESS) return r;
  note_device_range(base, bytes);
  Entry e;
  e.allocation = {base, reinterpret_cast<uint64_t>(host), base, bytes, SharedKind::RegisteredHost, flags};
  std::lock_guard lock(g_mutex);
  // The device copy starts as the application's memory.
  e.snapshot.assign(static_cast<uint8_t*>(host), static_cast<uint8_t*>(host) + bytes);
  for (size_t done = 0; done < bytes; done += kMaxRun) {
    if (CUresult r = copy_to_device(FN_cuMemcpyHtoD_v2, base + done, static_cast<uint8_t*>(host) + done,
                                    std::min(kMaxRun, bytes - done), nullptr);
        r != CUDA_SUCCESS) {
      forget_device_range(base);
      server_free(base);
      return r;
    }
  }
  e.watched = WrittenPages::get().watch(e.pages(), e.pages_length());
  entries()[base] = std::move(e);
  g_count.fetch_add(1);
  *device = base;
  return CUDA_SUCCESS;
}

bool find_shared(uint64_t pointer, SharedAllocation& found) {
  if (g_count.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(g_mutex);
  auto it = entries().upper_bound(pointer);
  if (it == entries().begin()) return false;
  --it;
  if (pointer >= it->first + it->second.allocation.bytes) return false;
  found = it->second.allocation;
  return true;
}

bool find_shared_host(uint64_t pointer, SharedAllocation& found) {
  if (g_count.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(g_mutex);
  for (const auto& [base, e] : entries()) {
    if (pointer >= e.allocation.host && pointer - e.allocation.host < e.allocation.bytes) {
      found = e.allocation;
      return true;
    }
  }
  return false;
}

CUdeviceptr release_shared(CUdeviceptr pointer) {
  if (g_count.load(std::memory_order_acquire) == 0) return pointer;
  std::lock_guard lock(g_mutex);
  auto it = entries().find(pointer);
  if (it == entries().end()) return pointer;
  const SharedAllocation a = it->second.allocation;
  if (it->second.watched) WrittenPages::get().unwatch(it->second.pages(), it->second.pages_length());
  // The host copy of managed and mapped memory is ours; registered memory is the application's.
  if (a.kind != SharedKind::RegisteredHost) make_host_inaccessible(a.base, page_round(a.bytes));
  entries().erase(it);
  g_count.fetch_sub(1);
  if (a.server_base != a.base) forget_device_range(a.base);
  return a.server_base;
}

void capture_changed(bool begin, CUresult result) {
  if (begin && result == CUDA_SUCCESS) g_captures.fetch_add(1);
  // An invalidated capture has ended too.
  if (!begin && (result == CUDA_SUCCESS || result == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED)) {
    int current = g_captures.load();
    while (current > 0 && !g_captures.compare_exchange_weak(current, current - 1)) {
    }
  }
}

bool capture_under_way() { return g_captures.load() > 0; }

void shared_memory_context_gone(CUcontext context) {
  std::lock_guard lock(g_mutex);
  fetch_streams().erase(context);
}

CUresult before_device_work() {
  if (g_count.load(std::memory_order_acquire) == 0) return CUDA_SUCCESS;
  if (g_captures.load() > 0) return CUDA_SUCCESS;
  std::lock_guard lock(g_mutex);
  g_device_work.fetch_add(1);
  count_work("shared memory: checks before device work", entries().size());
  for (auto& [base, e] : entries())
    if (CUresult r = send_host_writes(e); r != CUDA_SUCCESS) return r;
  return CUDA_SUCCESS;
}

CUresult after_synchronisation(bool /*context_idle*/) {
  if (g_count.load(std::memory_order_acquire) == 0) return CUDA_SUCCESS;
  if (g_captures.load() > 0) return CUDA_SUCCESS;
  std::lock_guard lock(g_mutex);
  const uint64_t work = g_device_work.load();
  if (work == g_fetched_at) return CUDA_SUCCESS;
  count_work("shared memory: fetches after a synchronisation", entries().size());
  for (auto& [base, e] : entries()) {
    // What the host wrote meanwhile goes first, so that the fetch does not undo it.
    if (CUresult r = send_host_writes(e); r != CUDA_SUCCESS) return r;
    if (CUresult r = fetch_device_copy(e); r != CUDA_SUCCESS) return r;
  }
  g_fetched_at = work;
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda

using namespace rgpu::cuda;

RGPU_EXPORT CUresult cuMemAllocManaged(CUdeviceptr* pointer, size_t bytes, unsigned int flags) {
  if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST) return CUDA_ERROR_INVALID_VALUE;
  return allocate_shared(pointer, bytes, SharedKind::Managed, flags);
}

// Prefetches and advice name a location; the server's driver takes a device ordinal, or
// CU_DEVICE_CPU for its host (the host copy here is kept in step at synchronisations).
static CUresult location_device(const CUmemLocation& location, CUdevice& device) {
  switch (location.type) {
    case CU_MEM_LOCATION_TYPE_DEVICE: device = location.id; return CUDA_SUCCESS;
    case CU_MEM_LOCATION_TYPE_HOST:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA:
    case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT: device = CU_DEVICE_CPU; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

using PrefetchV1 = CUresult (*)(CUdeviceptr, size_t, CUdevice, CUstream);
static CUresult prefetch(PrefetchV1 v1, CUdeviceptr pointer, size_t bytes, CUmemLocation location, unsigned int flags,
                         CUstream stream) {
  CUdevice device = 0;
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = location_device(location, device); r != CUDA_SUCCESS) return r;
  return v1(pointer, bytes, device, stream);
}

RGPU_EXPORT CUresult cuMemPrefetchAsync_v2(CUdeviceptr pointer, size_t bytes, CUmemLocation location,
                                           unsigned int flags, CUstream stream) {
  return prefetch(&cuMemPrefetchAsync, pointer, bytes, location, flags, stream);
}
RGPU_EXPORT CUresult cuMemPrefetchAsync_v2_ptsz(CUdeviceptr pointer, size_t bytes, CUmemLocation location,
                                                unsigned int flags, CUstream stream) {
  return prefetch(&cuMemPrefetchAsync_ptsz, pointer, bytes, location, flags, stream);
}
RGPU_EXPORT CUresult cuMemAdvise_v2(CUdeviceptr pointer, size_t bytes, CUmem_advise advice, CUmemLocation location) {
  CUdevice device = 0;
  if (CUresult r = location_device(location, device); r != CUDA_SUCCESS) return r;
  return cuMemAdvise(pointer, bytes, advice, device);
}
