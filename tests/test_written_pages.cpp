// The kernel's report of written pages, which the Vulkan ICD uses to find what an application
// changed in mapped memory: writes by the program and by system calls are both seen, once.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <set>

#include "written_pages.hpp"

namespace rgpu {
namespace {

constexpr size_t kPage = 4096;

std::set<size_t> written_pages(uint8_t* base, size_t length) {
  std::set<size_t> pages;
  EXPECT_TRUE(WrittenPages::get().take(base, length, [&](size_t offset, size_t run) {
    for (size_t p = offset / kPage; p < (offset + run) / kPage; ++p) pages.insert(p);
  }));
  return pages;
}

TEST(WrittenPages, ReportsProgramAndSystemCallWritesOnce) {
  const size_t length = 32 * kPage;
  auto* base = static_cast<uint8_t*>(::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(base, MAP_FAILED);
  if (!WrittenPages::get().watch(base, length)) {
    ::munmap(base, length);
    GTEST_SKIP() << "this kernel has no asynchronous write protection with PAGEMAP_SCAN (Linux 6.7+)";
  }
  EXPECT_TRUE(written_pages(base, length).empty());
  base[3 * kPage] = 1;
  base[7 * kPage + 100] = 2;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], "kernel", 6), 6);
  ASSERT_EQ(::read(fds[0], base + 10 * kPage + 5, 6), 6);  // the kernel writes the page
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(written_pages(base, length), (std::set<size_t>{3, 7, 10}));
  EXPECT_TRUE(written_pages(base, length).empty()) << "pages are reported once, then watched again";
  base[7 * kPage] = 3;
  EXPECT_EQ(written_pages(base, length), (std::set<size_t>{7}));
  WrittenPages::get().unwatch(base, length);
  ::munmap(base, length);
}

}  // namespace
}  // namespace rgpu
