// The host memory that copies captured into graphs may touch at each launch: the server names an
// address and a size, and only a range the application itself gave a copy while a capture was
// under way is read or written (a compromised server must not reach the rest of the process).
#pragma once

#include <cstdint>
#include <vector>

#include "cuda_wire.hpp"

namespace rgpu::cuda {

// A copy between the device and [address, address + size) was sent while a capture was under way
// (it may have been captured): a launch of its graph may write there (WriteToHost) or read there
// (ReadFromHost).
void note_possible_captured_copy(HostFunctionKind kind, uint64_t address, uint64_t size);

// Carries out a captured copy's host end that the server asks for: writes the answer's bytes to
// its memory, or reads its memory into `read`. False (nothing touched, an error logged) when the
// answer names memory no captured copy was given, or its bytes do not match its size.
bool relay_captured_copy(const HostFunctionPollAnswer& answer, std::vector<uint8_t>& read);

}  // namespace rgpu::cuda
