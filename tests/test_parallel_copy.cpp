// parallel_copy: every byte lands where a memcpy would put it, whatever the size and alignment,
// with several callers at once, and in a forked child (which has none of its parent's helpers).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <thread>
#include <vector>

#include "parallel_copy.hpp"

namespace rgpu {
namespace {

std::vector<uint8_t> random_bytes(size_t size, unsigned seed) {
  std::vector<uint8_t> bytes(size);
  std::mt19937 rng(seed);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

// Copies `size` bytes between odd offsets and checks the bytes around the copy are untouched.
bool copies_exactly(size_t size, size_t src_offset, size_t dst_offset, unsigned seed) {
  const auto src = random_bytes(size + src_offset, seed);
  std::vector<uint8_t> dst(size + dst_offset + 16, 0xA5);
  parallel_copy(dst.data() + dst_offset, src.data() + src_offset, size);
  for (size_t i = 0; i < dst_offset; ++i)
    if (dst[i] != 0xA5) return false;
  for (size_t i = 0; i < 16; ++i)
    if (dst[dst_offset + size + i] != 0xA5) return false;
  return std::equal(src.begin() + static_cast<std::ptrdiff_t>(src_offset), src.end(),
                    dst.begin() + static_cast<std::ptrdiff_t>(dst_offset));
}

TEST(ParallelCopy, EveryByteLandsForManySizesAndAlignments) {
  const size_t sizes[] = {0, 1, 4095, (1u << 20) - 1, 1u << 20, (1u << 20) + 1, (3u << 20) + 12345, 8u << 20,
                          (64u << 10) * 3 + 1, 33u << 20};
  unsigned seed = 1;
  for (size_t size : sizes)
    for (size_t src_offset : {0, 3})
      for (size_t dst_offset : {0, 5}) EXPECT_TRUE(copies_exactly(size, src_offset, dst_offset, seed++)) << size;
}

TEST(ParallelCopy, SeveralCallersAtOnce) {
  std::vector<std::thread> threads;
  std::vector<int> ok(6, 0);
  for (size_t t = 0; t < ok.size(); ++t)
    threads.emplace_back([&, t] {
      bool all = true;
      for (unsigned round = 0; round < 5; ++round)
        all = all && copies_exactly((2u << 20) + t * 4099 + round, t % 3, round % 2, static_cast<unsigned>(t * 10 + round));
      ok[t] = all;
    });
  for (auto& thread : threads) thread.join();
  for (size_t t = 0; t < ok.size(); ++t) EXPECT_TRUE(ok[t]) << "thread " << t;
}

TEST(ParallelCopy, WorksInAForkedChildAfterTheParentUsedIt) {
  ASSERT_TRUE(copies_exactly(4u << 20, 0, 0, 7));  // the parent's helpers exist now
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(copies_exactly(4u << 20, 1, 2, 8) ? 0 : 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace rgpu
