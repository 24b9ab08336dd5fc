// CUDA_VISIBLE_DEVICES over the daemon's pool, with the driver's rules.
#pragma once

#include <string>
#include <vector>

#include "messages.hpp"

namespace rgpu::client {

// Pool positions the variable selects, in its order. Entries are ordinals or UUIDs ("GPU-" +
// the UUID's 8-4-4-4-12 hex form, any unambiguous prefix, case-insensitive). As in CUDA, the
// list ends at the first entry that is invalid, out of range or ambiguous; repeats are dropped;
// an empty value selects nothing.
std::vector<size_t> select_visible(const std::string& value, const std::vector<GpuInfo>& pool);

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
std::string uuid_text(const std::array<uint8_t, 16>& uuid);

}  // namespace rgpu::client
