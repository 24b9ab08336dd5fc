// The driver's private tables (cuGetExportTable): function tables looked up by UUID that
// libcudart and NVIDIA's libraries use beside the documented driver API. docs/cuda-private-tables.md
// describes each table we provide and what its slots do here.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <span>

namespace rgpu::cuda {

struct ExportTable {
  const char* name;
  CUuuid id;
  // The table as handed out. Most tables begin with their own size in bytes; the context-local
  // storage table instead ends with a null slot.
  std::span<const void* const> slots;
};

// Every table this library provides.
std::span<const ExportTable* const> export_tables();

// cuGetExportTable: the table for `id`, or the error the driver gives for a UUID it does not know
// (logged once with the library at `caller`, the return address of the application's call).
CUresult get_export_table(const void** table, const CUuuid* id, const void* caller);

// The table families (one source file each), constant-initialised.
extern const ExportTable kCudartInterfaceTable;
extern const ExportTable kContextStorageTable;
extern const ExportTable kContextChecksTable;
extern const ExportTable kToolsTlsTable;
extern const ExportTable kToolsCallbackHooksTable;
extern const ExportTable kIntegrityCheckTable;
extern const ExportTable kContextIdentityTable;
extern const ExportTable kClusterTable;
extern const ExportTable kModuleFunctionsTable;

// Context-local storage: runs and forgets the destructors registered for a context that is going
// away (destroyed, or a primary context reset or released by this process for the last time).
void context_storage_destroyed(CUcontext context);

// Table construction.
constexpr CUuuid uuid_from_text(const char* text) {  // "6bd5fb6c-5bf4-e74a-8987-d93912fd9df9"
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  CUuuid id{};
  for (size_t byte = 0; byte < sizeof id.bytes; ++text) {
    if (*text == '-') continue;
    id.bytes[byte++] = static_cast<char>(nibble(text[0]) << 4 | nibble(text[1]));
    ++text;
  }
  return id;
}

template <typename Fn>
const void* slot(Fn* function) {
  return reinterpret_cast<const void*>(function);
}
inline const void* size_slot(size_t slots) { return reinterpret_cast<const void*>(slots * sizeof(void*)); }

// Slots of a provided table whose meaning RGPU does not know: each logs its table and index once
// and answers CUDA_ERROR_NOT_SUPPORTED.
CUresult unknown_slot_called(const char* table, size_t index);
template <const char* Table, size_t Index>
CUresult unknown_slot() {
  return unknown_slot_called(Table, Index);
}

}  // namespace rgpu::cuda
