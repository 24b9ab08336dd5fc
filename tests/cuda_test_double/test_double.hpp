// A TEST DOUBLE of the CUDA driver (libcuda) for CI machines without a GPU. The RGPU server
// dlopens it through $RGPU_CUDA_LIBRARY and cannot tell it from a driver: two devices, device
// memory that is host memory, and kernels implemented on the host (kernels.cpp), run as they are
// launched (or, behind a host function, when their stream gets there: stream_order.cpp). It
// exports only the entry points it implements with real semantics; a server that asks for any
// other one finds no symbol and answers CUDA_ERROR_NOT_SUPPORTED.
//
// Every entry point holds one lock for its whole run, except while it waits for queued stream
// work; the helpers declared here expect it held.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#define DOUBLE_EXPORT extern "C" __attribute__((visibility("default")))

namespace rgpu::cuda_double {

inline constexpr int kDeviceCount = 2;
inline constexpr uint64_t kDeviceMemory = 80ull << 30;

std::unique_lock<std::mutex> lock_driver();
// cuInit has run.
bool initialized();
// A device's PCI bus number and UUID, whatever cuInit.
int pci_bus(CUdevice device);
CUuuid device_uuid(CUdevice device);
// For device queries: CUDA_ERROR_NOT_INITIALIZED before cuInit, CUDA_ERROR_INVALID_DEVICE for a
// bad ordinal.
CUresult check_device(CUdevice device);

// Handles are numbers from one counter, never reused: a stale or foreign handle is never found,
// and one kind of handle is never mistaken for another.
uintptr_t next_handle();

template <typename Handle, typename Object>
class Registry {
 public:
  Handle add(Object object) {
    const uintptr_t id = next_handle();
    objects_.emplace(id, std::move(object));
    return reinterpret_cast<Handle>(id);
  }
  Object* find(Handle handle) {
    auto it = objects_.find(reinterpret_cast<uintptr_t>(handle));
    return it == objects_.end() ? nullptr : &it->second;
  }
  void remove(Handle handle) { objects_.erase(reinterpret_cast<uintptr_t>(handle)); }
  template <typename Predicate>
  void remove_if(Predicate predicate) {
    std::erase_if(objects_, [&](const auto& entry) { return predicate(entry.second); });
  }
  template <typename Predicate>
  std::vector<Handle> handles_if(Predicate predicate) const {
    std::vector<Handle> handles;
    for (const auto& [id, object] : objects_)
      if (predicate(object)) handles.push_back(reinterpret_cast<Handle>(id));
    return handles;
  }

 private:
  std::map<uintptr_t, Object> objects_;
};

// ---- contexts (contexts.cpp) ---------------------------------------------------------------

struct Context {
  CUdevice device = 0;
  unsigned flags = 0;
  bool primary = false;
  bool alive = true;     // false once destroyed (a primary context: while nobody retains it)
  int primary_retains = 0;
  // An error the device hit while running this context's work: from then on every call in the
  // context answers it, as a real context after a fault does.
  CUresult sticky = CUDA_SUCCESS;
};
Context* find_context(CUcontext handle);
// The calling thread's current context, usable: CUDA_ERROR_INVALID_CONTEXT without one,
// CUDA_ERROR_CONTEXT_IS_DESTROYED for a destroyed one, or its sticky error.
CUresult current_context(CUcontext& handle);
// What a context owns is freed with it (by the files that own those things).
void release_memory_of(CUcontext context);
// Streams, events, graphs and executable graphs (whose user objects' destructors run with the
// lock released for a while).
void release_streams_and_events_of(std::unique_lock<std::mutex>& lock, CUcontext context);
void release_modules_of(CUcontext context);

// ---- device memory (memory.cpp) ------------------------------------------------------------

// Device memory is host memory in a reserved address range of its own per device, far from the
// addresses the host allocator hands out; addresses are never handed out twice.
// Stands for a context's own memory in place of a module: nobody can free it but the context's end.
inline const CUmodule kContextReserve = reinterpret_cast<CUmodule>(~uintptr_t{0});
CUresult allocate_device_memory(CUcontext context, size_t bytes, CUmodule module, CUdeviceptr& pointer);
// [pointer, pointer + bytes) inside one live allocation of `context` (any context when null),
// or nullptr.
// Bytes of device memory live on `device` (allocations and module globals, in whole pages); the
// caller holds the driver lock.
uint64_t device_memory_in_use(CUdevice device);
std::byte* device_bytes(CUdeviceptr pointer, size_t bytes, CUcontext context = nullptr);

// ---- the device memory of every process (process_table.cpp) --------------------------------

// Records this process's bytes on each device (device_memory_in_use) where the server process it
// belongs to reads them through NVML; called after every change, with the driver lock held.
void publish_memory_use();
struct ProcessMemory {
  unsigned pid;
  uint64_t bytes;
};
// The processes of this server (its main process and its workers) holding memory on `device`:
// this process alone where the shared table cannot be made.
std::vector<ProcessMemory> processes_on(CUdevice device);
void release_memory_of_module(CUmodule module);
// Virtual memory (vmm.cpp): addresses reserved apart from the allocations' (0 when none are left),
// ranges mapped onto a file's pages (an allocation handle's memory), which any context may use
// once its device has access.
CUdeviceptr reserve_addresses(size_t bytes, size_t alignment);
bool map_addresses(CUdeviceptr at, size_t bytes, int fd, size_t offset, CUdevice device);
void unmap_addresses(CUdeviceptr at);
void set_mapping_access(CUdeviceptr at, bool accessible);

// ---- memory pools (pools.cpp) ----------------------------------------------------------------

inline constexpr size_t kDevicePage = 4096;
// An allocation of a pool's (freed: pool_memory_freed, with its whole pages).
CUresult allocate_pool_memory(CUcontext context, size_t bytes, CUmemoryPool pool, CUdeviceptr& pointer);
CUresult allocate_from_pool(CUcontext context, CUmemoryPool pool, size_t bytes, CUdeviceptr& pointer);
void pool_memory_freed(CUmemoryPool pool, size_t bytes);
CUmemoryPool current_pool(CUdevice device);
// At a synchronisation: each pool keeps no more than its release threshold beyond what is in use.
void release_pool_memory();

// Memory of the device's that is not an allocation of its window (arrays, a pool's idle memory,
// VMM's physical memory): false when it does not fit the device.
bool take_device_memory(CUdevice device, uint64_t bytes);
void give_device_memory(CUdevice device, uint64_t bytes);

// ---- arrays, textures and surfaces (arrays.cpp, textures.cpp) -------------------------------

// A CUDA array's bytes: rows of width * element bytes, height rows per slice (at least 1), depth
// slices (at least 1: layers, cubemap faces). Where the box [x, x + bytes) of row y in slice z
// lies, or nullptr outside the array (or for an unknown array, or one of another context).
std::byte* array_bytes(CUarray array, size_t x_bytes, size_t y, size_t z, size_t bytes, CUcontext context = nullptr);
// The array's descriptor (false for an unknown array).
bool array_descriptor(CUarray array, CUDA_ARRAY3D_DESCRIPTOR& descriptor);
bool mipmapped_array_exists(CUmipmappedArray mipmap);
void release_arrays_of(CUcontext context);
// Bytes per element of a format (0 for formats the double does not store).
size_t format_bytes(uint32_t format);
// A texture's texel (x, y) of a 1-channel float resource, or false (an unknown object, one of
// another context, or outside it).
bool texture_texel_f32(CUtexObject texture, CUcontext context, uint64_t x, uint64_t y, float& value);
// Stores into the surface's array at byte x of row y; false outside it.
bool surface_store_f32(CUsurfObject surface, CUcontext context, uint64_t x_bytes, uint64_t y, float value);
void release_textures_of(CUcontext context);

// ---- streams (streams_events.cpp) ----------------------------------------------------------

// A stream the current context may use: the default stream (0, CU_STREAM_LEGACY,
// CU_STREAM_PER_THREAD) or one created in that context.
CUresult check_stream(CUstream stream, CUcontext context);
bool is_default_stream(CUstream stream);
// A created stream that synchronizes with the legacy default stream (made without
// CU_STREAM_NON_BLOCKING); false for destroyed ones.
bool is_blocking_stream(CUstream stream);

// ---- stream order (stream_order.cpp) -------------------------------------------------------

// Work runs when it is issued, unless its stream still has work queued behind a host function:
// then it waits its turn in the stream's queue, which a thread of the stream's own runs. The
// default streams are one stream per context here, and the legacy stream's implicit
// synchronization holds: work on it waits for the context's blocking streams, theirs for it.
// Each takes the caller's hold of the driver lock and may wait with it released.
//
// Device work: returns the fault it hits (which becomes the context's sticky error) or CUDA_SUCCESS.
using StreamWork = std::function<CUresult()>;
// Work that must wait in the queue is first told so by `queued` (which takes the host memory it
// reads then, as a driver stages pageable memory when the copy is issued).
void issue(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream, StreamWork work,
           const std::function<void()>& queued = nullptr);
// A host function always runs on the stream's thread, without the driver lock, once the work
// issued before it has run. After a fault in the context it is skipped, unless `after_faults` (a
// stream callback): then it is told the fault.
void issue_host_function(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream,
                         std::function<void(CUresult status)> function, bool after_faults);
struct KernelCall;
// Captured, a kernel launch becomes a kernel node instead (an asynchronous copy: capture_copy
// below): true when the stream is capturing and took it.
bool capture_kernel(CUstream stream, const KernelCall& call);
// A call that is not safe while a stream of `context` captures in global mode (a synchronous copy,
// a context synchronisation): true if one does, which the call invalidates, as the driver does.
bool unsafe_during_capture(CUcontext context);
// Whether the stream's queued work has all run.
bool stream_idle(CUcontext context, CUstream stream);
// Waits until the stream's queued work (the legacy stream's: the blocking streams' too) has run.
void finish_stream(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream);
// Waits until all queued work of the context has run.
void finish_context(std::unique_lock<std::mutex>& lock, CUcontext context);
// Waits until `done` holds; it is checked again whenever queued work has run.
void wait_for_queued_work(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done);

// ---- kernels (kernels.cpp) -----------------------------------------------------------------

struct Launch {
  uint64_t threads;                      // grid size times block size
  std::span<const uint8_t> parameters;   // the argument bytes at their offsets
  CUcontext context;
  CUmodule module;
  // What a kernel reads and writes; nullptr when the range is not the context's memory.
  template <typename T>
  T* memory(CUdeviceptr pointer, uint64_t count) const {
    if (count > SIZE_MAX / sizeof(T)) return nullptr;
    return reinterpret_cast<T*>(device_bytes(pointer, count * sizeof(T), context));
  }
  template <typename T>
  T parameter(size_t offset) const {
    T value;
    std::memcpy(&value, parameters.data() + offset, sizeof value);
    return value;
  }
};

struct Kernel {
  const char* name;
  std::vector<std::pair<size_t, size_t>> parameters;  // offset, size
  const char* global;  // the module global it uses, or nullptr
  // CUDA_SUCCESS, or the error the device hits (CUDA_ERROR_ILLEGAL_ADDRESS).
  CUresult (*run)(const Launch& launch);
};
const Kernel* find_kernel(const std::string& name);

// A launch, checked, its arguments packed (modules_kernels.cpp): what a launch runs and what a
// kernel node holds.
struct KernelCall {
  CUfunction function = nullptr;
  unsigned dims[6] = {};
  unsigned shared = 0;
  std::vector<uint8_t> arguments;
  std::vector<void*> pointers;  // kernel_param_pointers()
};
CUresult prepare_kernel(CUcontext context, CUfunction function, const unsigned dims[6], unsigned shared, void** params,
                        void** extra, KernelCall& call);
// The work that runs it in `context` (a fault when its module is gone by then).
StreamWork kernel_work(const KernelCall& call, CUcontext context);
// kernelParams pointing into the call's arguments (kept in the call).
void** kernel_param_pointers(KernelCall& call);
// cuFuncGetParamInfo's answer for the kernel (offset and size may be null).
CUresult parameter_info(const Kernel& kernel, size_t index, size_t* offset, size_t* size);

// ---- modules (modules_kernels.cpp) and libraries (libraries.cpp) ---------------------------

struct Image {
  std::vector<const Kernel*> kernels;
  std::map<std::string, size_t> globals;  // name, bytes
};
// CUDA_ERROR_INVALID_IMAGE for anything but the double's module text or a fat binary.
CUresult parse_image(const char* image, Image& parsed);
bool is_fatbin(const void* image);
CUresult parse_fatbin(const void* image, Image& parsed);
CUresult load_module(CUcontext context, const Image& image, CUmodule& module);
void unload_module(CUmodule module);
bool module_loaded(CUmodule module);
CUresult module_function(CUmodule module, const std::string& name, CUfunction& function);
// cuModuleGetGlobal's answer (pointer and bytes may be null).
CUresult module_global(CUmodule module, const std::string& name, CUdeviceptr* pointer, size_t* bytes);
// A library kernel's function in `context`, where the library is loaded on first use;
// CUDA_ERROR_INVALID_HANDLE when `kernel` is not a library kernel.
CUresult kernel_function(CUkernel kernel, CUcontext context, CUfunction& function);

// ---- graph nodes (streams_events.cpp) and their parameters (graph_nodes.cpp) ----------------

// A memory allocation node's parameters, as it was added.
struct AllocationNode {
  CUmemPoolProps pool{};
  std::vector<CUmemAccessDesc> access;
  size_t bytes = 0;
  CUdeviceptr pointer = 0;
};
// A batch of memory operations, run in stream order as cuStreamBatchMemOp_v2 runs them.
struct BatchNode {
  CUcontext context = nullptr;
  unsigned flags = 0;
  std::vector<CUstreamBatchMemOpParams> operations;
};
// A node: an event record, a host function when `function` is set, a kernel, other device work
// (a memcpy node: `copy` says what it copies, when it was added or captured with one), a
// conditional node, an allocation or a batch of memory operations; an empty node otherwise.
struct GraphNode {
  CUgraph graph = nullptr;
  std::vector<CUgraphNode> dependencies = {};
  CUevent event = nullptr;
  CUhostFn function = nullptr;
  void* data = nullptr;
  std::optional<KernelCall> kernel = std::nullopt;
  StreamWork work = nullptr;
  // A conditional node (an `if`): its handle and its body graphs, run when the handle's value is
  // not zero (the first) or is (the second, if there is one).
  CUgraphConditionalHandle condition = 0;
  std::vector<CUgraph> bodies = {};
  std::optional<CUDA_MEMCPY3D> copy = std::nullopt;
  std::optional<AllocationNode> allocation = std::nullopt;
  std::optional<BatchNode> batch = std::nullopt;
  std::map<CUlaunchAttributeID, CUlaunchAttributeValue> attributes = {};  // a kernel node's
};
// A graph's node (nullptr for an unknown one) and the context its graph was made in.
GraphNode* find_graph_node(CUgraphNode node, CUcontext* context = nullptr);
// The node an executable graph made of the graph's `node`, or nullptr; its context.
GraphNode* find_exec_node(CUgraphExec exec, CUgraphNode node, CUcontext* context = nullptr);
// The context `graph` was made in, or nullptr for an unknown graph.
CUcontext graph_context(CUgraph graph);
// Adds `made` to `graph` after `dependencies`, all of them nodes of that graph.
CUresult add_graph_node(CUgraphNode* node, CUgraph graph, const CUgraphNode* dependencies, size_t count, GraphNode made);
// Captured, an asynchronous copy becomes a memcpy node that runs `work` (and whose parameters are
// `copy`): true when the stream is capturing and took it.
bool capture_copy(CUstream stream, const StreamWork& work, const CUDA_MEMCPY3D& copy);
// Batches of memory operations: checked (CUDA_ERROR_INVALID_VALUE for a bad one), then issued in
// stream order.
CUresult check_batch(CUcontext context, const CUstreamBatchMemOpParams* operations, unsigned count);
void issue_batch(std::unique_lock<std::mutex>& lock, CUcontext context, CUstream stream,
                 const std::vector<CUstreamBatchMemOpParams>& operations);

}  // namespace rgpu::cuda_double
