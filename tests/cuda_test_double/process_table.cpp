// Which processes hold how much of the double's device memory, as the real NVML sees every
// process on a GPU: the server's main process reads its workers' memory through NVML. The table
// is a small shared-memory object per server (named by the main process's pid; a worker, started
// as `rgpu worker`, uses its parent's), one slot per process, written with atomics.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr size_t kSlots = 256;
struct Slot {
  std::atomic<uint32_t> pid;
  std::atomic<uint64_t> bytes[kDeviceCount];
};
struct Table {
  Slot slots[kSlots];
};

bool is_worker() {
  std::ifstream cmdline("/proc/self/cmdline");
  std::string program, command;
  std::getline(cmdline, program, '\0');
  std::getline(cmdline, command, '\0');
  return command == "worker";
}

std::string table_name(pid_t server) { return "/rgpu-cuda-test-double-" + std::to_string(server); }

// A server's main process removes its table (its workers may have made it) when it exits.
__attribute__((destructor)) void remove_table() {
  if (!is_worker()) ::shm_unlink(table_name(::getpid()).c_str());
}

Table* map_table() {
  const bool worker = is_worker();
  const pid_t server = worker ? ::getppid() : ::getpid();
  const int fd = ::shm_open(table_name(server).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return nullptr;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || (st.st_size < static_cast<off_t>(sizeof(Table)) && ::ftruncate(fd, sizeof(Table)) != 0)) {
    ::close(fd);
    return nullptr;
  }
  void* mapped = ::mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) return nullptr;
  return static_cast<Table*>(mapped);
}

Table* table() {
  static Table* const mapped = map_table();
  return mapped;
}

bool alive(uint32_t pid) { return pid != 0 && ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0; }

// This process's slot: one it had, else a free one or one of a process that has ended.
Slot* own_slot(Table& t) {
  const auto me = static_cast<uint32_t>(::getpid());
  for (Slot& slot : t.slots)
    if (slot.pid.load() == me) return &slot;
  for (Slot& slot : t.slots) {
    uint32_t seen = slot.pid.load();
    if ((seen == 0 || !alive(seen)) && slot.pid.compare_exchange_strong(seen, me)) return &slot;
  }
  return nullptr;
}
}  // namespace

void publish_memory_use() {
  Table* t = table();
  if (t == nullptr) return;
  if (Slot* slot = own_slot(*t))
    for (CUdevice d = 0; d < kDeviceCount; ++d) slot->bytes[d].store(device_memory_in_use(d));
}

std::vector<ProcessMemory> processes_on(CUdevice device) {
  std::vector<ProcessMemory> found;
  Table* t = table();
  if (t == nullptr) {
    if (uint64_t used = device_memory_in_use(device)) found.push_back({static_cast<unsigned>(::getpid()), used});
    return found;
  }
  for (const Slot& slot : t->slots) {
    const uint32_t pid = slot.pid.load();
    const uint64_t bytes = slot.bytes[device].load();
    if (bytes != 0 && alive(pid)) found.push_back({pid, bytes});
  }
  return found;
}

}  // namespace rgpu::cuda_double
