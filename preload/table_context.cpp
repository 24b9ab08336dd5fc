// Context-local storage (libcudart hangs its per-context state on a context, with a destructor
// the driver runs when the context goes away) and the context checks table.
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "api_state.hpp"
#include "cuda_client.hpp"
#include "export_tables.hpp"

namespace rgpu::cuda {

namespace {
using StorageDestructor = void (*)(CUcontext context, void* key, void* value);

struct StoredValue {
  void* value = nullptr;
  StorageDestructor destructor = nullptr;
};

std::mutex g_storage_mutex;
std::map<std::pair<CUcontext, void*>, StoredValue>& storage() {
  static auto* value = new std::map<std::pair<CUcontext, void*>, StoredValue>;  // never destroyed: see api_state.hpp
  return *value;
}

CUresult resolve_context(CUcontext& context) {
  if (context != nullptr) return CUDA_SUCCESS;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  context = current_context();
  return context != nullptr ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

CUresult storage_put(CUcontext context, void* key, void* value, StorageDestructor destructor) {
  if (CUresult r = resolve_context(context); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_storage_mutex);
  storage()[{context, key}] = StoredValue{value, destructor};
  return CUDA_SUCCESS;
}

CUresult storage_delete(CUcontext context, void* key) {
  if (CUresult r = resolve_context(context); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_storage_mutex);
  return storage().erase({context, key}) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult storage_get(void** value, CUcontext context, void* key) {
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = resolve_context(context); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(g_storage_mutex);
  auto it = storage().find({context, key});
  if (it == storage().end()) return CUDA_ERROR_INVALID_HANDLE;
  *value = it->second.value;
  return CUDA_SUCCESS;
}

// No size slot: the table ends with a null entry.
const void* const kStorageSlots[] = {slot(&storage_put), slot(&storage_delete), slot(&storage_get), nullptr};

constexpr char kChecksName[] = "context checks";

// Whether a context is in a state that stops the runtime from using it: never, for contexts RGPU
// hands out (no context here is ever left half torn down). The driver leaves the third argument
// alone in that case.
CUresult context_check(CUcontext, uint32_t* state, const void**) {
  if (state != nullptr) *state = 0;
  return CUDA_SUCCESS;
}

uint32_t pending_context_state() { return 0; }

const void* const kChecksSlots[] = {
    size_slot(15),
    slot(&unknown_slot<kChecksName, 1>),
    slot(&context_check),
    slot(&pending_context_state),
    slot(&unknown_slot<kChecksName, 4>),
    slot(&unknown_slot<kChecksName, 5>),
    slot(&unknown_slot<kChecksName, 6>),
    slot(&unknown_slot<kChecksName, 7>),
    slot(&unknown_slot<kChecksName, 8>),
    slot(&unknown_slot<kChecksName, 9>),
    slot(&unknown_slot<kChecksName, 10>),
    slot(&unknown_slot<kChecksName, 11>),
    slot(&unknown_slot<kChecksName, 12>),
    slot(&unknown_slot<kChecksName, 13>),
    slot(&unknown_slot<kChecksName, 14>),
};
}  // namespace

void context_storage_destroyed(CUcontext context) {
  std::vector<std::pair<void*, StoredValue>> gone;
  {
    std::lock_guard lock(g_storage_mutex);
    for (auto it = storage().lower_bound({context, nullptr}); it != storage().end() && it->first.first == context;) {
      gone.emplace_back(it->first.second, it->second);
      it = storage().erase(it);
    }
  }
  // Outside the lock: a destructor may call back into the driver (and into this table).
  for (const auto& [key, stored] : gone)
    if (stored.destructor) stored.destructor(context, key, stored.value);
}

constinit const ExportTable kContextStorageTable{
    "context-local storage", uuid_from_text("c693336e-1121-df11-a8c3-68f355d89593"), kStorageSlots};

constinit const ExportTable kContextChecksTable{
    kChecksName, uuid_from_text("263e8860-7cd2-6143-92f6-bbd5006dfa7e"), kChecksSlots};

}  // namespace rgpu::cuda
