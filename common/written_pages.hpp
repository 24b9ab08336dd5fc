// Which pages of RGPU's host copies of GPU memory (Vulkan mapped memory, CUDA managed and mapped
// memory) the application wrote since the last look,
// from the kernel: the pages are write-protected with userfaultfd's asynchronous mode, writes
// (by the program or by a system call such as read()) mark them written, and PAGEMAP_SCAN reports
// and protects them again in one step (Linux 6.7 or later). Where the kernel cannot, every page
// counts as possibly written and the caller compares it with its snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

namespace rgpu {

class WrittenPages {
 public:
  // Process-wide. RGPU_WRITE_TRACKING=compare (or RGPU_VK_WRITE_TRACKING) turns the kernel's tracking off.
  static WrittenPages& get();

  // Starts watching a page-aligned region this library mapped; false if the kernel cannot.
  bool watch(uint8_t* base, size_t length);
  void unwatch(uint8_t* base, size_t length);
  // Calls `written(offset, length)` for each run of pages written since the last call, and
  // watches them again. False if the scan failed (the caller must then assume all written).
  bool take(uint8_t* base, size_t length, const std::function<void(size_t offset, size_t length)>& written);

 private:
  WrittenPages();
  int uffd_ = -1;
  int pagemap_ = -1;
};

}  // namespace rgpu
