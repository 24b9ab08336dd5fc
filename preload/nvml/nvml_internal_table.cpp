// NVML's private table (nvmlInternalGetExportTable, c4fe3e6c-c98f-6c4e-a327-ee696e12f7c4), as far as
// nvidia-smi is known to use it: without the table nvidia-smi stops at once ("Mismatch in versions
// between nvidia-smi and NVML"). Slots seen natively (tests/gpu/suite.sh trace "nvidia-smi"):
//   81       (unsigned index, char* bus_id, unsigned length): device `index`'s PCI bus id
//   213-215  (device, unsigned* count, entry*): its compute, graphics and MPS processes, in
//            entries of kProcessEntryBytes (pid, memory, instance ids, then the name inline)
// Every other slot answers NVML_ERROR_NOT_SUPPORTED and logs its index once.
#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <string>

#include "log.hpp"
#include "nvml_state.hpp"

using namespace rgpu;
using namespace rgpu::nvml_client;

namespace {

constexpr size_t kSlots = 270;  // the driver's table is this long (its size, 0x870, in slot 0)
constexpr size_t kProcessEntryBytes = 4128;
constexpr size_t kProcessNameOffset = 32;
constexpr unsigned kNoInstance = 0xFFFFFFFFu;

Return unknown_slot(size_t index) {
  static std::mutex mutex;
  static std::set<size_t> told;
  std::lock_guard lock(mutex);
  if (told.insert(index).second)
    LOG_INFO("slot %zu of NVML's private table is not supported by RGPU; returning NVML_ERROR_NOT_SUPPORTED", index);
  return nvml::kErrorNotSupported;
}

Return bus_id_by_index(unsigned index, char* buffer, unsigned length) {
  nvml::Device handle = nullptr;
  if (Return r = device_by_index(index, handle); r != nvml::kSuccess) return r;
  const PoolDevice* device = nullptr;
  if (Return r = device_of(handle, device); r != nvml::kSuccess) return r;
  const NvmlString& text = device->facts[NvmlText::PciBusIdLegacy];
  if (text.result != nvml::kSuccess) return text.result;
  if (buffer == nullptr) return nvml::kErrorInvalidArgument;
  if (text.text.size() + 1 > length) return nvml::kErrorInsufficientSize;
  std::memcpy(buffer, text.text.c_str(), text.text.size() + 1);
  return nvml::kSuccess;
}

// The process's command line's first word, as the driver names a process.
std::string process_name(uint64_t pid) {
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string name;
  std::getline(cmdline, name, '\0');
  return name;
}

// Its compute or graphics processes in the table's entries.
Return process_entries(nvml::Device handle, unsigned* count, uint8_t* entries, bool graphics) {
  return list_processes(handle, graphics, count, entries != nullptr, [&](unsigned i, const NvmlProcess& p) {
    uint8_t* entry = entries + i * kProcessEntryBytes;
    std::memset(entry, 0, kProcessEntryBytes);
    const auto pid = static_cast<uint32_t>(p.owner);
    std::memcpy(entry, &pid, sizeof pid);
    std::memcpy(entry + 8, &p.used_memory, sizeof p.used_memory);
    std::memcpy(entry + 16, &kNoInstance, sizeof kNoInstance);
    std::memcpy(entry + 20, &kNoInstance, sizeof kNoInstance);
    const std::string name = process_name(p.owner);
    std::memcpy(entry + kProcessNameOffset, name.data(), std::min(name.size(), kProcessEntryBytes - kProcessNameOffset - 1));
  });
}

Return compute_processes(nvml::Device d, unsigned* count, uint8_t* entries) { return process_entries(d, count, entries, false); }
Return graphics_processes(nvml::Device d, unsigned* count, uint8_t* entries) { return process_entries(d, count, entries, true); }
// No process runs under MPS here: the device is asked as for the others, and none is listed.
Return mps_processes(nvml::Device d, unsigned* count, uint8_t*) {
  if (count == nullptr) return nvml::kErrorInvalidArgument;
  const PoolDevice* device = nullptr;
  if (Return r = device_of(d, device); r != nvml::kSuccess) return r;
  NvmlGpu now;
  if (Return r = live_state(*device, now); r != nvml::kSuccess) return r;
  *count = 0;
  return nvml::kSuccess;
}

template <size_t Index>
Return unknown() {
  return unknown_slot(Index);
}

template <size_t... Index>
constexpr std::array<const void*, sizeof...(Index)> unknown_slots(std::index_sequence<Index...>) {
  return {reinterpret_cast<const void*>(&unknown<Index>)...};
}

const std::array<const void*, kSlots> kTable = [] {
  std::array<const void*, kSlots> table = unknown_slots(std::make_index_sequence<kSlots>());
  table[0] = reinterpret_cast<const void*>(kSlots * sizeof(void*));
  table[81] = reinterpret_cast<const void*>(&bus_id_by_index);
  table[213] = reinterpret_cast<const void*>(&compute_processes);
  table[214] = reinterpret_cast<const void*>(&graphics_processes);
  table[215] = reinterpret_cast<const void*>(&mps_processes);
  return table;
}();

constexpr uint8_t kTableId[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e,
                                  0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};

}  // namespace

extern "C" __attribute__((visibility("default"))) Return nvmlInternalGetExportTable(const void** table, const void* id) {
  if (table == nullptr || id == nullptr) return nvml::kErrorInvalidArgument;
  if (std::memcmp(id, kTableId, sizeof kTableId) != 0) {
    const auto* b = static_cast<const uint8_t*>(id);
    LOG_INFO("NVML's private table %02x%02x%02x%02x-… is not provided by RGPU", b[0], b[1], b[2], b[3]);
    *table = nullptr;
    return nvml::kErrorNotSupported;
  }
  *table = kTable.data();
  return nvml::kSuccess;
}
