#version 450
// Stage 0: out = in * scale + add. Stage 1, after a barrier: mixes in the input read backwards and
// the specialization constant. Elements from `count` on are left as they were.
layout(local_size_x = 64) in;

layout(constant_id = 0) const uint SALT = 0u;

layout(std430, set = 0, binding = 0) readonly buffer Input { uint values[]; } src;
layout(std430, set = 0, binding = 1) buffer Output { uint values[]; } dst;

layout(push_constant) uniform Parameters {
  uint scale;
  uint add;
  uint count;
  uint stage;
} parameters;

void main() {
  uint i = gl_GlobalInvocationID.x;
  if (i >= parameters.count) return;
  if (parameters.stage == 0u)
    dst.values[i] = src.values[i] * parameters.scale + parameters.add;
  else
    dst.values[i] = (dst.values[i] ^ (src.values[parameters.count - 1u - i] >> 3)) + SALT;
}
