// cuGetExportTable's lookup: the provided tables by UUID.
#include "export_tables.hpp"

#include <dlfcn.h>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "cuda_client.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
std::string uuid_text(const CUuuid& id) {  // as uuid_from_text reads it
  std::string text;
  char hex[3];
  for (size_t i = 0; i < sizeof id.bytes; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(id.bytes[i]));
    text += hex;
  }
  return text;
}

bool first_time(const std::string& what) {
  static std::mutex mutex;
  static auto* seen = new std::set<std::string>;  // never destroyed: see api_state.hpp
  std::lock_guard lock(mutex);
  return seen->insert(what).second;
}

// Tables the driver has that RGPU leaves out on purpose. libcudart 13 looks up the first without
// calling any of its slots, PyTorch and CuPy look up the next two; all carry on without them.
// Nothing we ran looks up the others.
constexpr const char* kKnownUnprovided[] = {
    "f8cff951-2146-8b4e-b9e2-fb469e7c0dd9",
    "69a28e9f-2449-8b47-b030-c5da330ea4e9",
    "da9151d3-3ae6-cc41-a5c0-4f26d533e328",
    "0ca50b8c-1004-929a-89a7-d0df10e77286",  // context creation for the runtime
    "b10541e1-f7c7-c74a-9f64-f223be99f1e2",  // extended device queries
    "195bcbf4-d67d-024a-acc5-1d29cea631ae",  // heap records (absent from the CUDA 13 driver too)
    "dd9e98a4-f410-4844-99b0-e2aeb7b432b5",  // the Windows hybrid runtime loader
};

bool known_unprovided(const CUuuid& id) {
  for (const char* text : kKnownUnprovided) {
    const CUuuid known = uuid_from_text(text);
    if (std::memcmp(known.bytes, id.bytes, sizeof id.bytes) == 0) return true;
  }
  return false;
}
}  // namespace

std::span<const ExportTable* const> export_tables() {
  static constexpr const ExportTable* kTables[] = {
      &kCudartInterfaceTable, &kContextStorageTable,      &kContextChecksTable,
      &kToolsTlsTable,        &kToolsCallbackHooksTable, &kIntegrityCheckTable,
      &kContextIdentityTable, &kClusterTable, &kModuleFunctionsTable,
  };
  return kTables;
}

CUresult get_export_table(const void** table, const CUuuid* id, const void* caller) {
  if (table == nullptr || id == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (const ExportTable* candidate : export_tables()) {
    if (std::memcmp(candidate->id.bytes, id->bytes, sizeof id->bytes) == 0) {
      *table = candidate->slots.data();
      LOG_DEBUG("cuGetExportTable(%s): %s", uuid_text(*id).c_str(), candidate->name);
      return CUDA_SUCCESS;
    }
  }
  const std::string text = uuid_text(*id);
  if (known_unprovided(*id)) {
    LOG_DEBUG("cuGetExportTable(%s): a private table RGPU does not provide", text.c_str());
  } else if (first_time(text)) {
    Dl_info info{};
    const char* asker = dladdr(caller, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : "an unknown library";
    LOG_WARN("cuGetExportTable(%s): unknown private table, asked for by %s", text.c_str(), asker);
  }
  // What the driver answers for a UUID it does not know.
  *table = nullptr;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult unknown_slot_called(const char* table, size_t index) {
  if (first_time(std::string(table) + "/" + std::to_string(index)))
    LOG_WARN("slot %zu of the private %s table is not supported by RGPU; returning CUDA_ERROR_NOT_SUPPORTED",
             index, table);
  return CUDA_ERROR_NOT_SUPPORTED;
}

}  // namespace rgpu::cuda
