// The server's device addresses, kept out of this process's own address space. The application
// tells device from host memory by address (unified addressing); reserving the address ranges
// of its device allocations here (inaccessible, no memory behind them) keeps its allocator from
// ever placing host memory at an address that is also a device address.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rgpu::cuda {

// Reserves the 2 MiB blocks that [base, base + bytes) touches (counted: blocks are shared by
// neighbouring allocations). False when host memory of this process is already there: the
// range's addresses then mean both, and copies to or from them may be misjudged.
bool reserve_device_addresses(uint64_t base, size_t bytes);
// Gives back what reserve_device_addresses() took for the same range.
void release_device_addresses(uint64_t base, size_t bytes);
// Puts zeroed host memory at the reserved, page-aligned range [base, base + bytes) (the host copy of
// managed or mapped memory); false when part of it is not this library's reservation.
bool make_host_accessible(uint64_t base, size_t bytes);
// Takes that memory away again (the range stays reserved).
void make_host_inaccessible(uint64_t base, size_t bytes);

}  // namespace rgpu::cuda
