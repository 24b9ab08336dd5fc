// A token's memory budget shared by its workers: the limit holds across them, a worker's end
// frees what it held, and what a (compromised) worker writes into the shared block cannot make the
// main process read or write outside it or lift the limit.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "server/memory_budget.hpp"

namespace rgpu {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::shared_ptr<MemoryBudget> worker_view(const MemoryBudget& main, uint32_t slot) {
  return MemoryBudget::attach(::dup(main.memfd()), slot);
}

TEST(MemoryBudget, TheLimitHoldsAcrossWorkers) {
  auto main = MemoryBudget::create_shared(100 * kMiB, 4);
  const uint32_t a_slot = main->take_slot(), b_slot = main->take_slot();
  auto a = worker_view(*main, a_slot), b = worker_view(*main, b_slot);
  EXPECT_TRUE(a->reserve(60 * kMiB));
  EXPECT_FALSE(b->reserve(60 * kMiB));
  EXPECT_TRUE(b->reserve(40 * kMiB));
  EXPECT_EQ(main->used(), 100 * kMiB);
  EXPECT_FALSE(a->reserve(1));
  main->free_slot(a_slot);  // a's worker ended, whatever it held
  EXPECT_EQ(main->used(), 40 * kMiB);
  EXPECT_TRUE(b->reserve(60 * kMiB));
}

TEST(MemoryBudget, EverySlotIsTakenOnceUntilFreed) {
  auto main = MemoryBudget::create_shared(0, 2);
  EXPECT_EQ(main->take_slot(), 0u);
  EXPECT_EQ(main->take_slot(), 1u);
  EXPECT_EQ(main->take_slot(), main->slot_count());  // none left
  main->free_slot(0);
  EXPECT_EQ(main->take_slot(), 0u);
}

TEST(MemoryBudget, ABlockAWorkerScribbledOnHarmsNoOne) {
  auto main = MemoryBudget::create_shared(100 * kMiB, 2);
  const uint32_t slot = main->take_slot();
  auto worker = worker_view(*main, slot);
  // The block as a compromised worker sees it: limit, slot count, then the counters.
  const size_t size = 16 + 8 * 2;
  void* raw = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, main->memfd(), 0);
  ASSERT_NE(raw, MAP_FAILED);
  uint64_t huge_limit = ~0ull;
  uint32_t huge_count = 1u << 30;
  std::memcpy(raw, &huge_limit, 8);
  std::memcpy(static_cast<char*>(raw) + 8, &huge_count, 4);
  // The main process goes by the block as it made it: no slot past the two, the same limit.
  EXPECT_EQ(main->slot_count(), 2u);
  EXPECT_EQ(main->take_slot(), 1u);
  EXPECT_EQ(main->take_slot(), 2u);
  EXPECT_EQ(main->limit(), 100 * kMiB);
  // A worker attached before goes by it too; counters that wrap read as full.
  EXPECT_FALSE(worker->reserve(101 * kMiB));
  uint64_t wrapping = ~0ull - 10;
  std::memcpy(static_cast<char*>(raw) + 16, &wrapping, 8);
  EXPECT_FALSE(worker->reserve(kMiB));
  ::munmap(raw, size);
  // A block that says it is larger than it is cannot be attached.
  EXPECT_THROW(MemoryBudget::attach(::dup(main->memfd()), 0), std::runtime_error);
}

}  // namespace
}  // namespace rgpu
