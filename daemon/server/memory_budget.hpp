// Device memory used by all sessions of one token, CUDA and Vulkan alike (`max_memory`).
//
// Each session runs in a worker process of its own, so a token's count lives in a small block of
// shared memory that the main server process makes per token: the limit, and one counter per
// worker slot. A worker adds to its own slot only and refuses a reservation that takes the sum of
// all slots past the limit (two workers racing for the last bytes may both be refused; neither
// passes the limit). When a worker ends, however it ends, the main process clears its slot.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace rgpu {

class MemoryBudget {
 public:
  // An unlimited count of this process's own.
  MemoryBudget();
  // Makes a shared block for `slots` workers (main process); throws std::runtime_error.
  static std::shared_ptr<MemoryBudget> create_shared(uint64_t limit, uint32_t slots);
  // Maps a block made by create_shared, as the worker of `slot` (worker process). Takes `memfd`.
  static std::shared_ptr<MemoryBudget> attach(int memfd, uint32_t slot);
  ~MemoryBudget();
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  uint64_t limit() const;  // 0: unlimited
  // Bytes held by every worker of the token.
  uint64_t used() const;
  // Reserves bytes if they fit under the limit.
  bool reserve(uint64_t bytes);
  // Counts bytes already held, limit or not (every later reservation fails while over it).
  void charge(uint64_t bytes);
  void release(uint64_t bytes);

  // Main process: the block's memfd (for a worker to attach) and slot bookkeeping.
  int memfd() const { return memfd_; }
  uint32_t slot_count() const;
  // A slot no worker holds, or slot_count() when all are taken.
  uint32_t take_slot();
  // The slot's worker has ended: what it held is free again.
  void free_slot(uint32_t slot);

 private:
  struct Block;
  MemoryBudget(int memfd, Block* block, size_t mapped, uint32_t slot, uint64_t limit, uint32_t slot_count);

  int memfd_ = -1;
  Block* block_ = nullptr;
  size_t mapped_ = 0;
  uint32_t slot_ = 0;
  // The block's limit and size as made (main process) or first read (worker), never read from
  // the block again: a worker can write the block, and must not make another process read or
  // write past its end, or lift its own limit.
  uint64_t limit_ = 0;
  uint32_t slot_count_ = 1;
  std::unique_ptr<bool[]> taken_;  // main process: which slots have a worker
};

}  // namespace rgpu
