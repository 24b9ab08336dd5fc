// The test double's JIT linker: linking double module images concatenates their kernel and
// global lines under one header; the result loads with cuModuleLoadData.
#include <cstring>
#include <string>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
struct Link {
  std::string lines;   // every input's lines after its header
  std::string output;  // the linked image, once complete
};
Registry<CUlinkState, Link> g_links;
constexpr const char* kHeader = "RGPU-CUDA-TEST-DOUBLE-MODULE\n";
}  // namespace

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuLinkCreate_v2(unsigned int, CUjit_option*, void**, CUlinkState* state) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (state == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *state = g_links.add(Link{});
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuLinkAddData_v2(CUlinkState state, CUjitInputType, void* data, size_t size, const char*,
                                        unsigned int, CUjit_option*, void**) {
  auto lock = lock_driver();
  Link* link = g_links.find(state);
  if (link == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (data == nullptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
  const std::string input(static_cast<const char*>(data), strnlen(static_cast<const char*>(data), size));
  if (input.rfind(kHeader, 0) != 0) return CUDA_ERROR_INVALID_IMAGE;  // the double links its own text modules only
  Image parsed;
  if (CUresult r = parse_image(input.c_str(), parsed); r != CUDA_SUCCESS) return r;
  link->lines += input.substr(std::strlen(kHeader));
  if (!link->lines.empty() && link->lines.back() != '\n') link->lines += '\n';
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuLinkComplete(CUlinkState state, void** image, size_t* size) {
  auto lock = lock_driver();
  Link* link = g_links.find(state);
  if (link == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (image == nullptr || size == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (link->lines.empty()) return CUDA_ERROR_INVALID_VALUE;  // nothing was added
  link->output = kHeader + link->lines;
  *image = link->output.data();
  *size = link->output.size() + 1;  // with its NUL
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuLinkDestroy(CUlinkState state) {
  auto lock = lock_driver();
  if (g_links.find(state) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  g_links.remove(state);
  return CUDA_SUCCESS;
}
