#include "mapped_memory_sync.hpp"

#include <algorithm>
#include <cstring>

namespace rgpu {

void for_each_changed_run(const uint8_t* current, uint8_t* snapshot, size_t size, size_t page, size_t max_run,
                          const std::function<void(size_t, size_t)>& send, size_t max_gap) {
  size_t offset = 0;
  while (offset < size) {
    const size_t length = std::min(page, size - offset);
    if (std::memcmp(current + offset, snapshot + offset, length) == 0) {
      offset += length;
      continue;
    }
    size_t end = offset + length;  // just past the run's last changed page
    for (size_t probe = end; probe < size && probe - offset < max_run;) {
      const size_t next = std::min({page, size - probe, max_run - (probe - offset)});
      if (std::memcmp(current + probe, snapshot + probe, next) != 0) {
        end = probe + next;
      } else if (probe + next - end > max_gap) {
        break;
      }
      probe += next;
    }
    std::memcpy(snapshot + offset, current + offset, end - offset);
    send(offset, end - offset);
    offset = end;
  }
}

void merge_incoming(std::span<const uint8_t> incoming, uint8_t* local, uint8_t* snapshot) {
  const uint8_t* in = incoming.data();
  const size_t n = incoming.size();
  // Most often the local side did not touch the range: then the incoming bytes are the answer.
  if (std::memcmp(local, snapshot, n) == 0) {
    std::memcpy(local, in, n);
  } else {
    for (size_t i = 0; i < n; ++i)
      if (in[i] != snapshot[i]) local[i] = in[i];
  }
  std::memcpy(snapshot, in, n);
}

}  // namespace rgpu
