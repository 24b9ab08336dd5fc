// Which runs of a changed buffer travel: whole changed pages, bridged over short unchanged gaps.
#include "mapped_memory_sync.hpp"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

namespace {
using Runs = std::vector<std::pair<size_t, size_t>>;

Runs runs_of(std::vector<uint8_t>& current, std::vector<uint8_t>& snapshot, size_t page, size_t max_run, size_t max_gap) {
  Runs runs;
  rgpu::for_each_changed_run(current.data(), snapshot.data(), current.size(), page, max_run,
                             [&](size_t offset, size_t length) { runs.emplace_back(offset, length); }, max_gap);
  return runs;
}

TEST(ChangedRuns, SeparateChangesTravelApartWithoutAGap) {
  std::vector<uint8_t> current(256), snapshot(256);
  current[0] = current[64] = current[200] = 1;
  EXPECT_EQ(runs_of(current, snapshot, 16, 1024, 0), (Runs{{0, 16}, {64, 16}, {192, 16}}));
  EXPECT_EQ(snapshot, current);
  EXPECT_TRUE(runs_of(current, snapshot, 16, 1024, 0).empty());  // nothing changed since
}

TEST(ChangedRuns, ChangesCloserThanTheGapTravelTogether) {
  std::vector<uint8_t> current(4096), snapshot(4096);
  for (size_t i = 0; i < 1024; i += 64) current[i] = 1;  // every 64 bytes, as a strided host loop writes
  current[3000] = 2;                                        // and one far away
  EXPECT_EQ(runs_of(current, snapshot, 16, 1 << 20, 64), (Runs{{0, 976}, {2992, 16}}));
  EXPECT_EQ(snapshot, current);
}

TEST(ChangedRuns, ARunStopsAtItsLargestSize) {
  std::vector<uint8_t> current(256, 1), snapshot(256);
  EXPECT_EQ(runs_of(current, snapshot, 16, 100, 64), (Runs{{0, 100}, {100, 100}, {200, 56}}));
}
}  // namespace
