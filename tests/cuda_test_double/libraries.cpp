// The test double's libraries: images loaded once for every context. A library is loaded as a
// module into each context that uses it, on first use there.
#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
struct Library {
  Image image;
  std::map<CUcontext, CUmodule> modules;
};
struct LibraryKernel {
  CUlibrary library;
  const Kernel* kernel;
};
Registry<CUlibrary, Library> g_libraries;
Registry<CUkernel, LibraryKernel> g_kernels;

// The library's module in `context` (a module unloaded with its context is loaded again).
CUresult module_in(CUlibrary handle, CUcontext context, CUmodule& module) {
  Library* library = g_libraries.find(handle);
  if (library == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  auto it = library->modules.find(context);
  if (it != library->modules.end() && module_loaded(it->second)) {
    module = it->second;
    return CUDA_SUCCESS;
  }
  if (CUresult r = load_module(context, library->image, module); r != CUDA_SUCCESS) return r;
  library->modules[context] = module;
  return CUDA_SUCCESS;
}
}  // namespace

CUresult kernel_function(CUkernel handle, CUcontext context, CUfunction& function) {
  const LibraryKernel* kernel = g_kernels.find(handle);
  if (kernel == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUmodule module;
  if (CUresult r = module_in(kernel->library, context, module); r != CUDA_SUCCESS) return r;
  return module_function(module, kernel->kernel->name, function);
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuLibraryLoadData(CUlibrary* handle, const void* code, CUjit_option*, void**, unsigned int,
                                         CUlibraryOption*, void**, unsigned int) {
  // JIT and library options tune how real code is compiled and loaded; the double has neither.
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (handle == nullptr || code == nullptr) return CUDA_ERROR_INVALID_VALUE;
  Image image;
  if (CUresult r = parse_image(static_cast<const char*>(code), image); r != CUDA_SUCCESS) return r;
  *handle = g_libraries.add(Library{std::move(image), {}});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuLibraryUnload(CUlibrary handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  Library* library = g_libraries.find(handle);
  if (library == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  for (auto [context, module] : library->modules) unload_module(module);
  g_kernels.remove_if([&](const LibraryKernel& kernel) { return kernel.library == handle; });
  g_libraries.remove(handle);
  return CUDA_SUCCESS;
}

// One handle per kernel and library, as the driver gives.
static CUkernel kernel_handle(CUlibrary library, const Kernel* kernel) {
  auto same = g_kernels.handles_if([&](const LibraryKernel& known) { return known.library == library && known.kernel == kernel; });
  return same.empty() ? g_kernels.add(LibraryKernel{library, kernel}) : same.front();
}

DOUBLE_EXPORT CUresult cuLibraryGetKernel(CUkernel* kernel, CUlibrary handle, const char* name) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (kernel == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Library* library = g_libraries.find(handle);
  if (library == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  for (const Kernel* candidate : library->image.kernels) {
    if (candidate->name != std::string(name)) continue;
    *kernel = kernel_handle(handle, candidate);
    return CUDA_SUCCESS;
  }
  return CUDA_ERROR_NOT_FOUND;
}

DOUBLE_EXPORT CUresult cuLibraryGetKernelCount(unsigned int* count, CUlibrary handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Library* library = g_libraries.find(handle);
  if (library == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *count = static_cast<unsigned>(library->image.kernels.size());
  return CUDA_SUCCESS;
}

// Up to `count` of the library's kernels, in the image's order.
DOUBLE_EXPORT CUresult cuLibraryEnumerateKernels(CUkernel* kernels, unsigned int count, CUlibrary handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (kernels == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const Library* library = g_libraries.find(handle);
  if (library == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  for (unsigned i = 0; i < count && i < library->image.kernels.size(); ++i)
    kernels[i] = kernel_handle(handle, library->image.kernels[i]);
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuKernelGetFunction(CUfunction* function, CUkernel kernel) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (function == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return kernel_function(kernel, context, *function);
}

DOUBLE_EXPORT CUresult cuKernelGetName(const char** name, CUkernel handle) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const LibraryKernel* kernel = g_kernels.find(handle);
  if (kernel == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *name = kernel->kernel->name;
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuKernelGetParamInfo(CUkernel handle, size_t index, size_t* offset, size_t* size) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  const LibraryKernel* kernel = g_kernels.find(handle);
  if (kernel == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  return parameter_info(*kernel->kernel, index, offset, size);
}

DOUBLE_EXPORT CUresult cuLibraryGetModule(CUmodule* module, CUlibrary handle) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
  return module_in(handle, context, *module);
}

DOUBLE_EXPORT CUresult cuLibraryGetGlobal(CUdeviceptr* pointer, size_t* bytes, CUlibrary handle, const char* name) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  CUmodule module;
  if (CUresult r = module_in(handle, context, module); r != CUDA_SUCCESS) return r;
  return module_global(module, name, pointer, bytes);
}
