// cuGetExportTable's lookup: the provided tables by UUID.
#include "export_tables.hpp"

#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "cuda_client.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
std::string uuid_text(const CUuuid& id) {
  char text[33];
  for (size_t i = 0; i < sizeof id.bytes; ++i)
    std::snprintf(text + 2 * i, 3, "%02x", static_cast<unsigned char>(id.bytes[i]));
  return text;
}

void log_once(const std::string& what) {
  static std::mutex mutex;
  static auto* logged = new std::set<std::string>;  // never destroyed: see api_state.hpp
  std::lock_guard lock(mutex);
  if (logged->insert(what).second) LOG_WARN("%s", what.c_str());
}
}  // namespace

std::span<const ExportTable> export_tables() {
  static const std::array<ExportTable, 6> tables = {
      cudart_interface_table(), context_storage_table(),      context_checks_table(),
      tools_tls_table(),        tools_callback_hooks_table(), integrity_check_table(),
  };
  return tables;
}

CUresult get_export_table(const void** table, const CUuuid* id) {
  if (table == nullptr || id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (const ExportTable& candidate : export_tables()) {
    if (std::memcmp(candidate.id.bytes, id->bytes, sizeof id->bytes) == 0) {
      *table = candidate.slots.data();
      LOG_DEBUG("cuGetExportTable(%s): %s", uuid_text(*id).c_str(), candidate.name);
      return CUDA_SUCCESS;
    }
  }
  log_once("cuGetExportTable(" + uuid_text(*id) + "): no such private table in RGPU");
  *table = nullptr;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult unknown_slot_called(const char* table, size_t index) {
  log_once(std::string("slot ") + std::to_string(index) + " of the private " + table +
           " table is not supported by RGPU; returning CUDA_ERROR_NOT_SUPPORTED");
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace rgpu::cuda
