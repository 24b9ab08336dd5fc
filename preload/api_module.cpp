// Modules, libraries and kernel launches. Images travel as bytes; a kernel's parameter layout is
// learnt from the server once per function; launches do not wait for the server.
#include <elf.h>

#include <map>
#include <mutex>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr uint32_t kFatbinWrapperMagic = 0x466243b1;
constexpr uint32_t kFatbinMagic = 0xba55ed50;

struct FatbinWrapper {
  int32_t magic;
  int32_t version;
  const uint8_t* data;
  void* filename_or_fatbins;
};
struct FatbinHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t header_size;
  uint64_t fat_size;
};

// How many bytes an image handed to cuModuleLoadData occupies: fatbin (or its wrapper), ELF
// cubin, or NUL-terminated PTX.
std::span<const uint8_t> image_bytes(const void* image) {
  const auto* bytes = static_cast<const uint8_t*>(image);
  uint32_t magic;
  std::memcpy(&magic, bytes, sizeof magic);
  if (magic == kFatbinWrapperMagic) {
    const auto* wrapper = static_cast<const FatbinWrapper*>(image);
    return image_bytes(wrapper->data);
  }
  if (magic == kFatbinMagic) {
    FatbinHeader header;
    std::memcpy(&header, bytes, sizeof header);
    return {bytes, header.header_size + header.fat_size};
  }
  if (std::memcmp(bytes, ELFMAG, SELFMAG) == 0 && bytes[EI_CLASS] == ELFCLASS64) {
    Elf64_Ehdr elf;
    std::memcpy(&elf, bytes, sizeof elf);
    size_t end = std::max<size_t>(elf.e_shoff + size_t{elf.e_shnum} * elf.e_shentsize,
                                  elf.e_phoff + size_t{elf.e_phnum} * elf.e_phentsize);
    // Section contents may lie after the section table.
    for (unsigned i = 0; i < elf.e_shnum; ++i) {
      Elf64_Shdr section;
      std::memcpy(&section, bytes + elf.e_shoff + size_t{i} * elf.e_shentsize, sizeof section);
      if (section.sh_type != SHT_NOBITS) end = std::max<size_t>(end, section.sh_offset + section.sh_size);
    }
    return {bytes, end};
  }
  return {bytes, std::strlen(static_cast<const char*>(image)) + 1};
}

CUresult load(uint32_t function, const void* image, uint64_t& handle) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (image == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto bytes = image_bytes(image);
  if (bytes.size() > kMaxImageSize) return CUDA_ERROR_INVALID_IMAGE;
  while (bytes.size() > kImagePartSize) {  // a large image goes ahead in parts
    CallBuilder part(FN_rgpuImagePart);
    part.writer().bytes(bytes.data(), kImagePartSize);
    if (CUresult r = call_pipelined(part); r != CUDA_SUCCESS) return r;
    bytes = bytes.subspan(kImagePartSize);
  }
  CallBuilder call(function);
  call.writer().bytes(bytes.data(), bytes.size());
  return call_sync(call, [&](WireReader& reader) { handle = reader.get<uint64_t>(); });
}

std::mutex g_layout_mutex;
std::map<CUfunction, KernelParamLayout>& param_layouts() {
  static auto* value = new std::map<CUfunction, KernelParamLayout>;  // never destroyed: see api_state.hpp
  return *value;
}

}  // namespace

void forget_kernel_parameter_layouts() {
  std::lock_guard lock(g_layout_mutex);
  param_layouts().clear();
}

size_t KernelParamLayout::total() const {
  size_t end = 0;
  for (auto [offset, size] : params) end = std::max<size_t>(end, offset + size);
  return end;
}

CUresult kernel_param_layout(CUfunction f, KernelParamLayout& layout) {
  {
    std::lock_guard lock(g_layout_mutex);
    if (auto it = param_layouts().find(f); it != param_layouts().end()) {
      layout = it->second;
      return CUDA_SUCCESS;
    }
  }
  CallBuilder call(FN_rgpuFunctionParams);
  call.in(f);
  KernelParamLayout fetched;
  CUresult r = call_sync(call, [&](WireReader& reader) {
    const uint32_t count = reader.get<uint32_t>();
    if (count > 4096) throw WireError("too many kernel parameters");
    for (uint32_t i = 0; i < count; ++i) {
      const uint64_t offset = reader.get<uint64_t>();
      const uint64_t size = reader.get<uint64_t>();
      fetched.params.emplace_back(offset, size);
    }
  });
  if (r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_layout_mutex);
  layout = param_layouts()[f] = std::move(fetched);
  return CUDA_SUCCESS;
}

CUresult pack_kernel_params(const KernelParamLayout& layout, void** params, void** extra, CallBuilder& call) {
  std::vector<uint8_t> blob(layout.total());
  if (params != nullptr) {
    for (size_t i = 0; i < layout.params.size(); ++i) {
      auto [offset, size] = layout.params[i];
      if (params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
      std::memcpy(blob.data() + offset, params[i], size);
    }
  } else if (extra != nullptr) {
    const void* buffer = nullptr;
    size_t size = 0;
    for (size_t i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
      if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = extra[i + 1];
      else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<size_t*>(extra[i + 1]);
      else return CUDA_ERROR_INVALID_VALUE;
    }
    if (buffer == nullptr || size < blob.size()) return CUDA_ERROR_INVALID_VALUE;
    std::memcpy(blob.data(), buffer, blob.size());
  } else if (!layout.params.empty()) {
    return CUDA_ERROR_INVALID_VALUE;
  }
  call.writer().put<uint32_t>(static_cast<uint32_t>(layout.params.size()));
  for (auto [offset, size] : layout.params) call.writer().put<uint32_t>(static_cast<uint32_t>(offset));
  call.writer().blob(blob);
  return CUDA_SUCCESS;
}

namespace {

// Grid and block dimensions, shared memory, stream and launch attributes, as the server reads them.
void put_launch_shape(WireWriter& w, const unsigned dims[6], unsigned shared, CUstream stream,
                      std::span<const CUlaunchAttribute> attrs) {
  for (int i = 0; i < 6; ++i) w.put<uint32_t>(dims[i]);
  w.put<uint32_t>(shared).put<uint64_t>(reinterpret_cast<uint64_t>(stream));
  w.put<uint32_t>(static_cast<uint32_t>(attrs.size()));
  for (const auto& attr : attrs) w.put<uint32_t>(attr.id).bytes(&attr.value, sizeof attr.value);
}

CUresult launch(uint32_t variant, CUfunction f, const unsigned dims[6], unsigned shared, CUstream stream,
                std::span<const CUlaunchAttribute> attrs, void** params, void** extra) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  KernelParamLayout layout;
  if (CUresult r = kernel_param_layout(f, layout); r != CUDA_SUCCESS) return r;
  CallBuilder call(FN_rgpuLaunch);
  WireWriter& w = call.writer();
  w.put(variant).put<uint64_t>(reinterpret_cast<uint64_t>(f));
  put_launch_shape(w, dims, shared, stream, attrs);
  if (CUresult r = pack_kernel_params(layout, params, extra, call); r != CUDA_SUCCESS) return r;
  if (CUresult r = before_device_work(); r != CUDA_SUCCESS) return r;
  return call_pipelined(call);
}
}  // namespace

}  // namespace rgpu::cuda

using namespace rgpu::cuda;
using rgpu::WireReader;

RGPU_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uint64_t handle = 0;
  CUresult r = load(FN_rgpuModuleLoad, image, handle);
  if (r == CUDA_SUCCESS) *module = reinterpret_cast<CUmodule>(handle);
  return r;
}

RGPU_EXPORT CUresult cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned int, CUjit_option*, void**) {
  // JIT options tune the compile and ask for logs; the server's driver compiles with its defaults.
  return cuModuleLoadData(module, image);
}

RGPU_EXPORT CUresult cuModuleLoadFatBinary(CUmodule* module, const void* fatbin) { return cuModuleLoadData(module, fatbin); }

RGPU_EXPORT CUresult cuModuleLoad(CUmodule* module, const char* path) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  FILE* file = std::fopen(path, "rb");
  if (file == nullptr) return CUDA_ERROR_FILE_NOT_FOUND;
  std::vector<uint8_t> bytes;
  uint8_t buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(file);
  bytes.push_back(0);
  return cuModuleLoadData(module, bytes.data());
}

RGPU_EXPORT CUresult cuLibraryLoadData(CUlibrary* library, const void* code, CUjit_option*, void**, unsigned int,
                                       CUlibraryOption*, void**, unsigned int) {
  if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
  uint64_t handle = 0;
  CUresult r = load(FN_rgpuLibraryLoad, code, handle);
  if (r == CUDA_SUCCESS) *library = reinterpret_cast<CUlibrary>(handle);
  return r;
}

RGPU_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary* library, const char* path, CUjit_option* jit_options,
                                           void** jit_values, unsigned int jit_count, CUlibraryOption* options,
                                           void** values, unsigned int count) {
  if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  FILE* file = std::fopen(path, "rb");
  if (file == nullptr) return CUDA_ERROR_FILE_NOT_FOUND;
  std::vector<uint8_t> bytes;
  uint8_t buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  std::fclose(file);
  bytes.push_back(0);
  return cuLibraryLoadData(library, bytes.data(), jit_options, jit_values, jit_count, options, values, count);
}

RGPU_EXPORT CUresult cuFuncGetParamInfo(CUfunction f, size_t index, size_t* offset, size_t* size) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  KernelParamLayout layout;
  if (CUresult r = kernel_param_layout(f, layout); r != CUDA_SUCCESS) return r;
  if (index >= layout.params.size()) return CUDA_ERROR_INVALID_VALUE;
  if (offset) *offset = layout.params[index].first;
  if (size) *size = layout.params[index].second;
  return CUDA_SUCCESS;
}

RGPU_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                    unsigned bz, unsigned shared, CUstream stream, void** params, void** extra) {
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  return launch(FN_cuLaunchKernel, f, dims, shared, stream, {}, params, extra);
}

RGPU_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                         unsigned by, unsigned bz, unsigned shared, CUstream stream, void** params,
                                         void** extra) {
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  return launch(FN_cuLaunchKernel_ptsz, f, dims, shared, stream, {}, params, extra);
}

RGPU_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                               unsigned by, unsigned bz, unsigned shared, CUstream stream,
                                               void** params) {
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  return launch(FN_cuLaunchCooperativeKernel, f, dims, shared, stream, {}, params, nullptr);
}

RGPU_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                                    unsigned by, unsigned bz, unsigned shared, CUstream stream,
                                                    void** params) {
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  return launch(FN_cuLaunchCooperativeKernel_ptsz, f, dims, shared, stream, {}, params, nullptr);
}

static CUresult launch_ex(uint32_t variant, const CUlaunchConfig* config, CUfunction f, void** params, void** extra) {
  if (config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const unsigned dims[6] = {config->gridDimX,  config->gridDimY,  config->gridDimZ,
                            config->blockDimX, config->blockDimY, config->blockDimZ};
  return launch(variant, f, dims, config->sharedMemBytes, config->hStream,
                {config->attrs, config->attrs ? config->numAttrs : 0u}, params, extra);
}

RGPU_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params, void** extra) {
  return launch_ex(FN_cuLaunchKernelEx, config, f, params, extra);
}

RGPU_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** params, void** extra) {
  return launch_ex(FN_cuLaunchKernelEx_ptsz, config, f, params, extra);
}

RGPU_EXPORT CUresult cuOccupancyMaxActiveClusters(int* clusters, CUfunction f, const CUlaunchConfig* config) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (clusters == nullptr || config == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const unsigned dims[6] = {config->gridDimX,  config->gridDimY,  config->gridDimZ,
                            config->blockDimX, config->blockDimY, config->blockDimZ};
  CallBuilder call(FN_cuOccupancyMaxActiveClusters);
  call.writer().put<uint64_t>(reinterpret_cast<uint64_t>(f));
  put_launch_shape(call.writer(), dims, config->sharedMemBytes, config->hStream,
                   {config->attrs, config->attrs ? config->numAttrs : 0u});
  return call_sync(call, [&](WireReader& reader) { *clusters = reader.get<int32_t>(); });
}
