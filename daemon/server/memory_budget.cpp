#include "memory_budget.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "local_peer.hpp"

namespace rgpu {

struct MemoryBudget::Block {
  uint64_t limit;
  uint32_t slot_count;
  uint32_t reserved;
  std::atomic<uint64_t> used[1];  // slot_count of them
};

namespace {
size_t block_size(uint32_t slots) { return sizeof(uint64_t) * 2 + sizeof(std::atomic<uint64_t>) * slots; }
}  // namespace

MemoryBudget::MemoryBudget()
    : block_(static_cast<Block*>(::operator new(block_size(1)))), slot_(0) {
  std::memset(static_cast<void*>(block_), 0, block_size(1));
  block_->slot_count = 1;
}

MemoryBudget::MemoryBudget(int memfd, Block* block, size_t mapped, uint32_t slot, uint64_t limit, uint32_t slot_count)
    : memfd_(memfd), block_(block), mapped_(mapped), slot_(slot), limit_(limit), slot_count_(slot_count) {}

MemoryBudget::~MemoryBudget() {
  if (mapped_ != 0) {
    ::munmap(block_, mapped_);
    ::close(memfd_);
  } else {
    ::operator delete(block_);
  }
}

std::shared_ptr<MemoryBudget> MemoryBudget::create_shared(uint64_t limit, uint32_t slots) {
  const size_t size = block_size(slots);
  // Sealed: a worker must not be able to resize the block under the main process (SIGBUS).
  std::string error;
  const int fd = create_sealed_memfd("rgpu-memory-budget", size, error);
  if (fd < 0) throw std::runtime_error("cannot make a token's memory budget: " + error);
  void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapped == MAP_FAILED) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error(std::string("cannot make a token's memory budget: ") + std::strerror(error));
  }
  auto* block = static_cast<Block*>(mapped);
  block->limit = limit;
  block->slot_count = slots;
  std::shared_ptr<MemoryBudget> budget(new MemoryBudget(fd, block, size, slots, limit, slots));
  budget->taken_ = std::make_unique<bool[]>(slots);
  return budget;
}

std::shared_ptr<MemoryBudget> MemoryBudget::attach(int memfd, uint32_t slot) {
  std::string error;
  struct stat info {};
  if (!check_sealed_memfd(memfd, block_size(1), error) || ::fstat(memfd, &info) != 0) {
    ::close(memfd);
    throw std::runtime_error("the memory budget block is refused: " + error);
  }
  const size_t size = static_cast<size_t>(info.st_size);
  void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mapped == MAP_FAILED) {
    const int error = errno;
    ::close(memfd);
    throw std::runtime_error(std::string("cannot map the memory budget block: ") + std::strerror(error));
  }
  auto* block = static_cast<Block*>(mapped);
  const uint32_t slots = block->slot_count;
  const uint64_t limit = block->limit;
  if (block_size(slots) > size || slot >= slots) {
    ::munmap(mapped, size);
    ::close(memfd);
    throw std::runtime_error("memory budget slot " + std::to_string(slot) + " is outside its block");
  }
  return std::shared_ptr<MemoryBudget>(new MemoryBudget(memfd, block, size, slot, limit, slots));
}

uint64_t MemoryBudget::limit() const { return limit_; }
uint32_t MemoryBudget::slot_count() const { return slot_count_; }

uint64_t MemoryBudget::used() const {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < slot_count_; ++i) {
    const uint64_t before = sum;
    sum += block_->used[i].load(std::memory_order_acquire);
    if (sum < before) return ~0ull;  // counters no worker could have written honestly: full
  }
  return sum;
}

bool MemoryBudget::reserve(uint64_t bytes) {
  std::atomic<uint64_t>& mine = block_->used[slot_];
  mine.fetch_add(bytes, std::memory_order_acq_rel);
  const uint64_t total = used();
  if (limit_ != 0 && (total > limit_ || total < bytes)) {
    mine.fetch_sub(bytes, std::memory_order_acq_rel);
    return false;
  }
  return true;
}

void MemoryBudget::charge(uint64_t bytes) { block_->used[slot_].fetch_add(bytes, std::memory_order_acq_rel); }

void MemoryBudget::release(uint64_t bytes) {
  std::atomic<uint64_t>& mine = block_->used[slot_];
  uint64_t current = mine.load();
  while (!mine.compare_exchange_weak(current, current - std::min(bytes, current))) {
  }
}

uint32_t MemoryBudget::take_slot() {
  for (uint32_t i = 0; i < slot_count_; ++i)
    if (!taken_[i]) {
      taken_[i] = true;
      block_->used[i].store(0);
      return i;
    }
  return slot_count_;
}

void MemoryBudget::free_slot(uint32_t slot) {
  if (slot >= slot_count_) return;
  taken_[slot] = false;
  block_->used[slot].store(0);
}

}  // namespace rgpu
