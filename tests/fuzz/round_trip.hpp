// The decoders' oracle: a payload that decodes must encode back to the same bytes (every field
// has a single encoding). Only WireError may come out of a decoder; a mismatch aborts the run.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "wire.hpp"

namespace rgpu::fuzz {

// With `exact` false (a message with a field its receiver ignores, which may hold anything),
// what is encoded again must decode and encode to itself.
template <typename Decode>
void round_trip(std::span<const uint8_t> payload, Decode decode, bool exact = true) {
  std::vector<uint8_t> again;
  try {
    again = encode(decode(payload));
  } catch (const WireError&) {
    return;
  }
  const std::vector<uint8_t> expected = exact ? std::vector<uint8_t>(payload.begin(), payload.end()) : again;
  if (!exact) again = encode(decode(again));
  if (again != expected) {
    std::fprintf(stderr, "a payload that decodes does not encode back to itself\n");
    std::abort();
  }
}

}  // namespace rgpu::fuzz
