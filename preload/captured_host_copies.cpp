// Captured copies' host memory: what the application gave, and nothing else, at each launch.
#include "captured_host_copies.hpp"

#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "log.hpp"

namespace rgpu::cuda {

namespace {
// Enough for every copy of many captured graphs; a program that captures copies to ever new
// addresses beyond it gets errors at the launches of the graphs with the copies not kept.
constexpr size_t kMaxKept = 1 << 18;

std::mutex g_mutex;  // guards what follows
// (kind, address) -> the largest size a copy there was given.
std::map<std::pair<HostFunctionKind, uint64_t>, uint64_t>& kept() {
  static auto* value = new std::map<std::pair<HostFunctionKind, uint64_t>, uint64_t>;  // never destroyed: see api_state.hpp
  return *value;
}

bool given(HostFunctionKind kind, uint64_t address, uint64_t size) {
  std::lock_guard lock(g_mutex);
  auto it = kept().find({kind, address});
  return it != kept().end() && size <= it->second;
}

const char* direction(HostFunctionKind kind) { return kind == HostFunctionKind::WriteToHost ? "to" : "from"; }
}  // namespace

void note_possible_captured_copy(HostFunctionKind kind, uint64_t address, uint64_t size) {
  std::lock_guard lock(g_mutex);
  auto [it, added] = kept().try_emplace({kind, address}, size);
  if (!added) {
    if (it->second < size) it->second = size;
    return;
  }
  if (kept().size() > kMaxKept) {
    kept().erase(it);
    static bool told = false;
    if (!std::exchange(told, true))
      LOG_ERROR("more than %zu host ranges of captured copies are kept; launches of graphs with copies to or from "
                "others will fail",
                kMaxKept);
  }
}

bool relay_captured_copy(const HostFunctionPollAnswer& answer, std::vector<uint8_t>& read) {
  const HostFunctionKind kind = answer.kind;
  if (!given(kind, answer.address, answer.size)) {
    LOG_ERROR("the server asked for a captured copy %s host memory at %#llx (%llu bytes), which no captured copy "
              "of this process was given; refused",
              direction(kind), static_cast<unsigned long long>(answer.address),
              static_cast<unsigned long long>(answer.size));
    return false;
  }
  auto* memory = reinterpret_cast<uint8_t*>(answer.address);
  if (kind == HostFunctionKind::WriteToHost) {
    if (answer.bytes.size() != answer.size) {
      LOG_ERROR("a captured copy to host memory came with %zu bytes for %llu; not written", answer.bytes.size(),
                static_cast<unsigned long long>(answer.size));
      return false;
    }
    std::memcpy(memory, answer.bytes.data(), answer.bytes.size());
    return true;
  }
  read.assign(memory, memory + answer.size);
  return true;
}

}  // namespace rgpu::cuda
