// Keeping two copies of GPU memory in step (Vulkan mapped memory: the application's in the ICD and
// the driver's on the server; CUDA managed and mapped memory: the host copy and the device's). Each side keeps a snapshot of what the other side last saw, so
// only pages that changed travel, and a merge keeps bytes that only the receiving side changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace rgpu {

// Calls `send(offset, length)` for each run of pages where `current` differs from `snapshot`
// (runs at most `max_run` bytes), after copying those pages into `snapshot`. A run bridges up to
// `max_gap` bytes of unchanged pages between changed ones (fewer, larger sends; the bridged bytes
// are what the other side has already).
void for_each_changed_run(const uint8_t* current, uint8_t* snapshot, size_t size, size_t page, size_t max_run,
                          const std::function<void(size_t offset, size_t length)>& send, size_t max_gap = 0);

// Applies `incoming` (the other side's bytes at `offset`) to `local`: bytes where incoming
// differs from `snapshot` were changed by the other side and are taken; the others stay as the
// local side has them. `snapshot` becomes `incoming`.
void merge_incoming(std::span<const uint8_t> incoming, uint8_t* local, uint8_t* snapshot);

}  // namespace rgpu
