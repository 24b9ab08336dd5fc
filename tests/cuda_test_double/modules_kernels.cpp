// The test double's modules and launches. A module image (a library's too) is text:
//
//   RGPU-CUDA-TEST-DOUBLE-MODULE
//   <kernel name>            one line per kernel, from the double's kernels (kernels.cpp)
//   global <name> <bytes>    a zero-filled module global
//
// or an nvcc-built fat binary (fatbin_images.cpp). Anything else is not an image the double can
// load (CUDA_ERROR_INVALID_IMAGE).
#include <algorithm>
#include <charconv>
#include <sstream>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr const char* kMagic = "RGPU-CUDA-TEST-DOUBLE-MODULE";
constexpr size_t kMaxGlobalBytes = 1 << 20;
constexpr unsigned kMaxSharedBytes = 49152;         // without opting in
constexpr unsigned kMaxOptInSharedBytes = 232448;   // with CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES

struct Global {
  CUdeviceptr pointer;
  size_t bytes;
};
struct Module {
  CUcontext context;
  std::map<std::string, CUfunction> functions;
  std::map<std::string, Global> globals;
};
struct Function {
  CUmodule module;
  const Kernel* kernel;
  unsigned max_dynamic_shared = kMaxSharedBytes;
};
Registry<CUmodule, Module> g_modules;
Registry<CUfunction, Function> g_functions;

CUresult check_dimensions(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shared, unsigned max_shared) {
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return CUDA_ERROR_INVALID_VALUE;
  if (gx > 2147483647u || gy > 65535 || gz > 65535) return CUDA_ERROR_INVALID_VALUE;
  if (bx > 1024 || by > 1024 || bz > 64 || uint64_t{bx} * by * bz > 1024) return CUDA_ERROR_INVALID_VALUE;
  if (shared > max_shared) return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

// The argument bytes, each parameter copied from where kernelParams points.
std::vector<uint8_t> pack(const Kernel& kernel, void** params) {
  size_t end = 0;
  for (auto [offset, size] : kernel.parameters) end = std::max(end, offset + size);
  std::vector<uint8_t> bytes(end);
  for (size_t i = 0; i < kernel.parameters.size(); ++i)
    std::memcpy(bytes.data() + kernel.parameters[i].first, params[i], kernel.parameters[i].second);
  return bytes;
}
}  // namespace

CUresult parse_image(const char* image, Image& parsed) {
  if (is_fatbin(image)) return parse_fatbin(image, parsed);
  std::istringstream lines(image);
  std::string line;
  if (!std::getline(lines, line) || line != kMagic) return CUDA_ERROR_INVALID_IMAGE;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream words(line);
    std::string first, name, bytes_text;
    words >> first;
    if (first != "global") {
      const Kernel* kernel = find_kernel(line);
      if (kernel == nullptr) return CUDA_ERROR_INVALID_IMAGE;
      parsed.kernels.push_back(kernel);
      continue;
    }
    size_t bytes = 0;
    if (!(words >> name >> bytes_text) || !words.eof()) return CUDA_ERROR_INVALID_IMAGE;
    auto [end, error] = std::from_chars(bytes_text.data(), bytes_text.data() + bytes_text.size(), bytes);
    if (error != std::errc() || end != bytes_text.data() + bytes_text.size() || bytes == 0 || bytes > kMaxGlobalBytes)
      return CUDA_ERROR_INVALID_IMAGE;
    parsed.globals[name] = bytes;
  }
  for (const Kernel* kernel : parsed.kernels)
    if (kernel->global != nullptr && !parsed.globals.contains(kernel->global)) return CUDA_ERROR_INVALID_IMAGE;
  return CUDA_SUCCESS;
}

CUresult load_module(CUcontext context, const Image& image, CUmodule& handle) {
  handle = g_modules.add(Module{context, {}, {}});
  Module& loaded = *g_modules.find(handle);
  for (const auto& [name, bytes] : image.globals) {
    CUdeviceptr pointer = 0;
    if (CUresult r = allocate_device_memory(context, bytes, handle, pointer); r != CUDA_SUCCESS) {
      unload_module(handle);
      return r;
    }
    std::memset(reinterpret_cast<void*>(pointer), 0, bytes);
    loaded.globals[name] = Global{pointer, bytes};
  }
  for (const Kernel* kernel : image.kernels) loaded.functions[kernel->name] = g_functions.add(Function{handle, kernel});
  return CUDA_SUCCESS;
}

void unload_module(CUmodule handle) {
  Module* module = g_modules.find(handle);
  if (module == nullptr) return;
  for (auto& [name, function] : module->functions) g_functions.remove(function);
  release_memory_of_module(handle);
  g_modules.remove(handle);
}

bool module_loaded(CUmodule module) { return g_modules.find(module) != nullptr; }

CUresult module_function(CUmodule module, const std::string& name, CUfunction& function) {
  const Module* found = g_modules.find(module);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto it = found->functions.find(name);
  if (it == found->functions.end()) return CUDA_ERROR_NOT_FOUND;
  function = it->second;
  return CUDA_SUCCESS;
}

CUresult module_global(CUmodule module, const std::string& name, CUdeviceptr* pointer, size_t* bytes) {
  const Module* found = g_modules.find(module);
  if (found == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto it = found->globals.find(name);
  if (it == found->globals.end()) return CUDA_ERROR_NOT_FOUND;
  if (pointer) *pointer = it->second.pointer;
  if (bytes) *bytes = it->second.bytes;
  return CUDA_SUCCESS;
}

void release_modules_of(CUcontext context) {
  for (CUmodule handle : g_modules.handles_if([&](const Module& module) { return module.context == context; }))
    unload_module(handle);
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuModuleLoadData(CUmodule* handle, const void* image) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (handle == nullptr || image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Image image_parsed;
  if (CUresult r = parse_image(static_cast<const char*>(image), image_parsed); r != CUDA_SUCCESS) return r;
  return load_module(context, image_parsed, *handle);
}

DOUBLE_EXPORT CUresult cuModuleUnload(CUmodule handle) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (g_modules.find(handle) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  unload_module(handle);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuModuleGetFunction(CUfunction* function, CUmodule handle, const char* name) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (function == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return module_function(handle, name, *function);
}

DOUBLE_EXPORT CUresult cuModuleGetFunctionCount(unsigned int* count, CUmodule handle) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Module* module = g_modules.find(handle);
  if (module == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *count = static_cast<unsigned>(module->functions.size());
  return CUDA_SUCCESS;
}

// Up to `count` of the module's functions, in the order of their names.
DOUBLE_EXPORT CUresult cuModuleEnumerateFunctions(CUfunction* functions, unsigned int count, CUmodule handle) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (functions == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Module* module = g_modules.find(handle);
  if (module == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  unsigned i = 0;
  for (auto it = module->functions.begin(); it != module->functions.end() && i < count; ++it) functions[i++] = it->second;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuModuleGetGlobal_v2(CUdeviceptr* pointer, size_t* bytes, CUmodule handle, const char* name) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return module_global(handle, name, pointer, bytes);
}

DOUBLE_EXPORT CUresult cuFuncGetName(const char** name, CUfunction handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Function* function = g_functions.find(handle);
  if (function == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *name = function->kernel->name;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuFuncGetParamInfo(CUfunction handle, size_t index, size_t* offset, size_t* size) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const Function* function = g_functions.find(handle);
  if (function == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return parameter_info(*function->kernel, index, offset, size);
}

DOUBLE_EXPORT CUresult cuFuncGetAttribute(int* value, CUfunction_attribute attribute, CUfunction handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Function* function = g_functions.find(handle);
  if (function == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  switch (attribute) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *value = 1024; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES:
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES:
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *value = 0; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *value = 16; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *value = 90; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *value = 0; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *value = function->max_dynamic_shared; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

DOUBLE_EXPORT CUresult cuFuncSetAttribute(CUfunction handle, CUfunction_attribute attribute, int value) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Function* function = g_functions.find(handle);
  if (function == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (attribute != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) return CUDA_ERROR_NOT_SUPPORTED;
  if (value < 0 || static_cast<unsigned>(value) > kMaxOptInSharedBytes) return CUDA_ERROR_INVALID_VALUE;
  function->max_dynamic_shared = static_cast<unsigned>(value);
  return CUDA_SUCCESS;
}

namespace rgpu::cuda_double {

CUresult prepare_kernel(CUcontext context, CUfunction handle, const unsigned dims[6], unsigned shared, void** params,
                        void** extra, KernelCall& call) {
  // A library's kernel launches as its function in the current context.
  if (g_functions.find(handle) == nullptr)
    if (CUresult r = kernel_function(reinterpret_cast<CUkernel>(handle), context, handle); r != CUDA_SUCCESS) return r;
  const Function* function = g_functions.find(handle);
  if (g_modules.find(function->module)->context != context) return CUDA_ERROR_INVALID_CONTEXT;
  if (CUresult r = check_dimensions(dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared,
                                    function->max_dynamic_shared);
      r != CUDA_SUCCESS)
    return r;
  if (extra != nullptr) return CUDA_ERROR_NOT_SUPPORTED;
  if (params == nullptr && !function->kernel->parameters.empty()) return CUDA_ERROR_INVALID_VALUE;
  call.function = handle;
  std::copy(dims, dims + 6, call.dims);
  call.shared = shared;
  call.arguments = pack(*function->kernel, params);
  return CUDA_SUCCESS;
}

StreamWork kernel_work(const KernelCall& call, CUcontext context) {
  const Function* function = g_functions.find(call.function);
  if (function == nullptr) return [] { return CUDA_ERROR_LAUNCH_FAILED; };  // its module is gone
  uint64_t blocks = 1, block = 1;
  for (int i = 0; i < 3; ++i) blocks *= call.dims[i], block *= call.dims[3 + i];
  const uint64_t threads = blocks > UINT64_MAX / block ? UINT64_MAX : blocks * block;
  return [threads, arguments = call.arguments, context, module = function->module, run = function->kernel->run] {
    return run(Launch{threads, arguments, context, module});
  };
}

void** kernel_param_pointers(KernelCall& call) {
  const Function* function = g_functions.find(call.function);
  call.pointers.clear();
  if (function == nullptr) return nullptr;
  for (auto [offset, size] : function->kernel->parameters) call.pointers.push_back(call.arguments.data() + offset);
  return call.pointers.empty() ? nullptr : call.pointers.data();
}

}  // namespace rgpu::cuda_double

// The kernel runs before the launch returns, unless a host function holds its stream up: then
// when the stream reaches it. Captured, it becomes a kernel node that runs at each launch of the
// graph. A fault it hits does not fail the launch: like a real device's, it fails the context,
// and the next call there reports it.
DOUBLE_EXPORT CUresult cuLaunchKernel(CUfunction handle, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                      unsigned by, unsigned bz, unsigned shared, CUstream stream, void** params,
                                      void** extra) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (CUresult r = check_stream(stream, context); r != CUDA_SUCCESS) return r;
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  KernelCall call;
  if (CUresult r = prepare_kernel(context, handle, dims, shared, params, extra, call); r != CUDA_SUCCESS) return r;
  if (!capture_kernel(stream, call)) issue(lock, context, stream, kernel_work(call, context));
  return CUDA_SUCCESS;
}

// Modules load whole when loaded (CUDA_MODULE_LOADING has no effect on the double).
DOUBLE_EXPORT CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode* mode) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (mode == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *mode = CU_MODULE_EAGER_LOADING;
  return CUDA_SUCCESS;
}

// Occupancy, as a simple model of an SM: at most 32 blocks and 2048 threads, and 233472 bytes of
// shared memory shared by the blocks' dynamic shared memory.
namespace {
CUresult active_blocks(int* blocks, CUfunction handle, int block_size, size_t dynamic_shared) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (blocks == nullptr || block_size <= 0 || block_size > 1024) return CUDA_ERROR_INVALID_VALUE;
  if (g_functions.find(handle) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  constexpr size_t kSharedPerSm = 233472;
  size_t fit = std::min<size_t>(32, 2048 / static_cast<size_t>(block_size));
  if (dynamic_shared > 0) fit = std::min(fit, kSharedPerSm / dynamic_shared);
  *blocks = static_cast<int>(fit);
  return CUDA_SUCCESS;
}
}  // namespace

DOUBLE_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, CUfunction handle, int block_size,
                                                                     size_t dynamic_shared) {
  return active_blocks(blocks, handle, block_size, dynamic_shared);
}

DOUBLE_EXPORT CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* blocks, CUfunction handle,
                                                                              int block_size, size_t dynamic_shared,
                                                                              unsigned int flags) {
  if (flags & ~static_cast<unsigned>(CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE)) return CUDA_ERROR_INVALID_VALUE;
  return active_blocks(blocks, handle, block_size, dynamic_shared);
}
