#include "device_address_space.hpp"

#include <sys/mman.h>

#include <map>
#include <mutex>

namespace rgpu::cuda {

namespace {
constexpr uint64_t kBlock = 2u << 20;

struct Block {
  int allocations = 0;
  bool mapped = false;  // our reservation is there (not: host memory was there first)
};
std::mutex g_mutex;
auto* g_blocks = new std::map<uint64_t, Block>;  // by block index; never destroyed

uint64_t first_block(uint64_t base) { return base / kBlock; }
uint64_t end_block(uint64_t base, size_t bytes) { return (base + (bytes ? bytes : 1) + kBlock - 1) / kBlock; }

bool map_blocks(uint64_t first, uint64_t end) {
  void* wanted = reinterpret_cast<void*>(first * kBlock);
  const size_t length = (end - first) * kBlock;
  void* got = ::mmap(wanted, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (got == MAP_FAILED) return false;
  if (got != wanted) {  // a kernel without MAP_FIXED_NOREPLACE takes the address as a hint
    ::munmap(got, length);
    return false;
  }
  return true;
}

// Maps the fresh blocks [first, end) in one go, else one by one; records which it got.
bool reserve_run(uint64_t first, uint64_t end) {
  if (map_blocks(first, end)) {
    for (uint64_t block = first; block < end; ++block) (*g_blocks)[block].mapped = true;
    return true;
  }
  bool all = true;
  for (uint64_t block = first; block < end; ++block) {
    const bool mapped = map_blocks(block, block + 1);
    (*g_blocks)[block].mapped = mapped;
    all = all && mapped;
  }
  return all;
}
}  // namespace

bool reserve_device_addresses(uint64_t base, size_t bytes) {
  std::lock_guard lock(g_mutex);
  const uint64_t end = end_block(base, bytes);
  bool all_reserved = true;
  uint64_t run_start = 0;
  bool in_run = false;
  for (uint64_t block = first_block(base); block <= end; ++block) {
    const bool fresh = block < end && (*g_blocks)[block].allocations++ == 0;
    if (fresh && !in_run) {
      run_start = block;
      in_run = true;
    } else if (!fresh && in_run) {
      all_reserved = reserve_run(run_start, block) && all_reserved;
      in_run = false;
    }
  }
  return all_reserved;
}

void release_device_addresses(uint64_t base, size_t bytes) {
  std::lock_guard lock(g_mutex);
  const uint64_t end = end_block(base, bytes);
  for (uint64_t block = first_block(base); block < end; ++block) {
    auto it = g_blocks->find(block);
    if (it == g_blocks->end() || --it->second.allocations > 0) continue;
    if (it->second.mapped) ::munmap(reinterpret_cast<void*>(block * kBlock), kBlock);
    g_blocks->erase(it);
  }
}

bool make_host_accessible(uint64_t base, size_t bytes) {
  std::lock_guard lock(g_mutex);
  for (uint64_t block = first_block(base); block < end_block(base, bytes); ++block) {
    auto it = g_blocks->find(block);
    if (it == g_blocks->end() || !it->second.mapped) return false;
  }
  return ::mprotect(reinterpret_cast<void*>(base), bytes, PROT_READ | PROT_WRITE) == 0;
}

void make_host_inaccessible(uint64_t base, size_t bytes) {
  std::lock_guard lock(g_mutex);
  // Fresh zero pages and no access: the memory goes back to the system, the addresses stay ours.
  ::mmap(reinterpret_cast<void*>(base), bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

}  // namespace rgpu::cuda
