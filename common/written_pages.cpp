#include "written_pages.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "log.hpp"

namespace rgpu {

namespace {
// The kernel's ABI (linux/fs.h and linux/userfaultfd.h of Linux 6.7), declared here because
// older headers lack it.
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kPageIsWritten = 1u << 1;
constexpr uint64_t kScanWriteProtectMatching = 1u << 0;
constexpr uint64_t kScanCheckWriteProtectAsync = 1u << 1;
constexpr uint64_t kFeatureWriteProtectUnpopulated = 1ull << 13;
constexpr uint64_t kFeatureWriteProtectAsync = 1ull << 15;
constexpr size_t kRegionsPerScan = 256;
}  // namespace

WrittenPages& WrittenPages::get() {
  static WrittenPages pages;
  return pages;
}

WrittenPages::WrittenPages() {
  const char* mode = std::getenv("RGPU_WRITE_TRACKING");
  if (mode == nullptr) mode = std::getenv("RGPU_VK_WRITE_TRACKING");
  if (mode != nullptr && std::strcmp(mode, "compare") == 0) {
    LOG_INFO("writes to host copies of GPU memory are found by comparing (RGPU_WRITE_TRACKING=compare)");
    return;
  }
  auto give_up = [this](const char* what) -> void {
    LOG_INFO("writes to host copies of GPU memory are found by comparing: the kernel's write tracking is not "
             "available (%s: %s)", what, std::strerror(errno));
    if (uffd_ >= 0) ::close(uffd_);
    uffd_ = -1;
  };
  uffd_ = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (uffd_ < 0) {
    give_up("userfaultfd");
    return;
  }
  uffdio_api api{UFFD_API, kFeatureWriteProtectUnpopulated | kFeatureWriteProtectAsync, 0};
  if (::ioctl(uffd_, UFFDIO_API, &api) != 0) {
    give_up("asynchronous write protection");
    return;
  }
  pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap_ < 0) {
    give_up("/proc/self/pagemap");
    return;
  }
  // A scan of nothing tells whether the kernel has PAGEMAP_SCAN.
  PmScanArg probe{sizeof probe, 0, 0, 0, 0, 0, 0, 0, 0, kPageIsWritten, 0, kPageIsWritten};
  if (::ioctl(pagemap_, kPagemapScan, &probe) < 0) {
    ::close(pagemap_);
    pagemap_ = -1;
    give_up("PAGEMAP_SCAN");
    return;
  }
  LOG_DEBUG("writes to host copies of GPU memory are found by the kernel's write tracking");
}

bool WrittenPages::watch(uint8_t* base, size_t length) {
  if (uffd_ < 0 || pagemap_ < 0) return false;
  uffdio_register range{{reinterpret_cast<uint64_t>(base), length}, UFFDIO_REGISTER_MODE_WP, 0};
  if (::ioctl(uffd_, UFFDIO_REGISTER, &range) != 0) {
    LOG_WARN("cannot track writes to %zu bytes of host copies of GPU memory (%s); they are compared instead", length,
             std::strerror(errno));
    return false;
  }
  uffdio_writeprotect protect{{reinterpret_cast<uint64_t>(base), length}, UFFDIO_WRITEPROTECT_MODE_WP};
  if (::ioctl(uffd_, UFFDIO_WRITEPROTECT, &protect) != 0) {
    unwatch(base, length);
    return false;
  }
  return true;
}

void WrittenPages::unwatch(uint8_t* base, size_t length) {
  uffdio_range range{reinterpret_cast<uint64_t>(base), length};
  ::ioctl(uffd_, UFFDIO_UNREGISTER, &range);
}

bool WrittenPages::take(uint8_t* base, size_t length, const std::function<void(size_t, size_t)>& written) {
  PageRegion regions[kRegionsPerScan];
  uint64_t start = reinterpret_cast<uint64_t>(base);
  const uint64_t end = start + length;
  while (start < end) {
    PmScanArg scan{sizeof scan, kScanWriteProtectMatching | kScanCheckWriteProtectAsync, start, end, 0,
                   reinterpret_cast<uint64_t>(regions), kRegionsPerScan, 0, 0, kPageIsWritten, 0, kPageIsWritten};
    const long n = ::ioctl(pagemap_, kPagemapScan, &scan);
    if (n < 0) {
      LOG_WARN("PAGEMAP_SCAN failed (%s); comparing the whole host copy", std::strerror(errno));
      return false;
    }
    for (long i = 0; i < n; ++i)
      written(regions[i].start - reinterpret_cast<uint64_t>(base), regions[i].end - regions[i].start);
    if (scan.walk_end <= start) break;
    start = scan.walk_end;
  }
  return true;
}

}  // namespace rgpu
