// The integrity check table: cudart asks the driver for a keyed hash of facts both of them can see
// and compares it with its own; a wrong answer makes every runtime call fail with
// cudaErrorSoftwareValidityNotEstablished. Our answer is computed from what this library itself
// reports (cuDriverGetVersion, cuDeviceGetCount, cuDeviceGetUuid, cuDeviceGetAttribute).
#include <pthread.h>
#include <unistd.h>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"
#include "integrity_check.hpp"

namespace rgpu::cuda {

namespace {
constexpr char kName[] = "integrity check";

CUresult device_inputs(std::vector<IntegrityDevice>& devices) {
  int count = 0;
  if (CUresult r = cuDeviceGetCount(&count); r != CUDA_SUCCESS) return r;
  for (CUdevice device = 0; device < count; ++device) {
    IntegrityDevice entry;
    if (CUresult r = cuDeviceGetUuid_v2(&entry.uuid, device); r != CUDA_SUCCESS) return r;
    const std::pair<int32_t*, CUdevice_attribute> attributes[] = {
        {&entry.pci_domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID},
        {&entry.pci_bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID},
        {&entry.pci_device, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID},
    };
    for (auto [value, attribute] : attributes)
      if (CUresult r = cuDeviceGetAttribute(value, attribute, device); r != CUDA_SUCCESS) return r;
    devices.push_back(entry);
  }
  return CUDA_SUCCESS;
}

CUresult integrity_check(uint32_t runtime_request, uint64_t unix_seconds, uint64_t answer[2]);

const void* const kSlots[] = {
    size_slot(3),
    slot(&integrity_check),
    slot(&unknown_slot<kName, 2>),
};

CUresult integrity_check(uint32_t runtime_request, uint64_t unix_seconds, uint64_t answer[2]) {
  if (answer == nullptr) return CUDA_ERROR_INVALID_VALUE;
  IntegrityInputs inputs;
  int driver_version = 0;
  if (CUresult r = cuDriverGetVersion(&driver_version); r != CUDA_SUCCESS) return r;
  inputs.driver_version = static_cast<uint32_t>(driver_version);
  inputs.runtime_request = runtime_request;
  inputs.process_id = static_cast<uint32_t>(getpid());
  inputs.thread_id = static_cast<uint32_t>(pthread_self());
  inputs.cudart_table = reinterpret_cast<uint64_t>(kCudartInterfaceTable.slots.data());
  inputs.integrity_table = reinterpret_cast<uint64_t>(kSlots);
  inputs.check_function = reinterpret_cast<uint64_t>(kSlots[1]);
  inputs.unix_seconds = unix_seconds;
  if (integrity_answer_is_hashed(runtime_request))
    if (CUresult r = device_inputs(inputs.devices); r != CUDA_SUCCESS) return r;
  const auto words = integrity_answer(inputs);
  answer[0] = words[0];
  answer[1] = words[1];
  return CUDA_SUCCESS;
}
}  // namespace

constinit const ExportTable kIntegrityCheckTable{
    kName, uuid_from_text("d4082055-bde6-704b-8d34-ba123c66e1f2"), kSlots};

}  // namespace rgpu::cuda
