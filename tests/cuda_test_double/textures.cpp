// The test double's texture and surface objects: the descriptors they were made with, kept by
// handle, over arrays, mipmapped arrays, linear and pitched device memory; and the reads and
// writes the double's kernels make through them.
#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
struct Texture {
  CUDA_RESOURCE_DESC resource;
  CUDA_TEXTURE_DESC texture;
  CUDA_RESOURCE_VIEW_DESC view;
  bool has_view;
  CUcontext context;
};
struct Surface {
  CUDA_RESOURCE_DESC resource;
  CUcontext context;
};
// Object handles are 64-bit values, not pointers: the registries' handles serve as the numbers.
Registry<CUtexref, Texture> g_textures;
Registry<CUsurfref, Surface> g_surfaces;

CUtexref texture_key(CUtexObject object) { return reinterpret_cast<CUtexref>(static_cast<uintptr_t>(object)); }
CUsurfref surface_key(CUsurfObject object) { return reinterpret_cast<CUsurfref>(static_cast<uintptr_t>(object)); }

uint32_t bits(CUresourcetype type) {
  uint32_t value;
  std::memcpy(&value, &type, sizeof value);
  return value;
}

// What the resource names must exist in the current context, and linear memory lie in it.
CUresult check_resource(const CUDA_RESOURCE_DESC& resource, CUcontext context) {
  switch (bits(resource.resType)) {
    case CU_RESOURCE_TYPE_ARRAY: {
      CUDA_ARRAY3D_DESCRIPTOR descriptor;
      return array_descriptor(resource.res.array.hArray, descriptor) &&
                     array_bytes(resource.res.array.hArray, 0, 0, 0, 0, context) != nullptr
                 ? CUDA_SUCCESS
                 : CUDA_ERROR_INVALID_HANDLE;
    }
    case CU_RESOURCE_TYPE_MIPMAPPED_ARRAY:
      return mipmapped_array_exists(resource.res.mipmap.hMipmappedArray) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    case CU_RESOURCE_TYPE_LINEAR: {
      const auto& linear = resource.res.linear;
      return device_bytes(linear.devPtr, linear.sizeInBytes, context) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    }
    case CU_RESOURCE_TYPE_PITCH2D: {
      const auto& pitched = resource.res.pitch2D;
      size_t bytes = 0;
      if (pitched.height == 0 || pitched.width == 0 || __builtin_mul_overflow(pitched.pitchInBytes, pitched.height, &bytes))
        return CUDA_ERROR_INVALID_VALUE;
      return device_bytes(pitched.devPtr, bytes, context) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    }
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

// A descriptor an object was made with, for the Get*Desc queries.
template <typename Object, typename T>
CUresult describe(T* out, const Object* object, T Object::*field) {
  if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (object == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  *out = object->*field;
  return CUDA_SUCCESS;
}
}  // namespace

bool texture_texel_f32(CUtexObject object, CUcontext context, uint64_t x, uint64_t y, float& value) {
  const Texture* texture = g_textures.find(texture_key(object));
  if (texture == nullptr || texture->context != context) return false;
  const CUDA_RESOURCE_DESC& r = texture->resource;
  const std::byte* texel = nullptr;
  switch (bits(r.resType)) {
    case CU_RESOURCE_TYPE_ARRAY: texel = array_bytes(r.res.array.hArray, x * sizeof(float), y, 0, sizeof(float)); break;
    case CU_RESOURCE_TYPE_PITCH2D:
      if (x < r.res.pitch2D.width && y < r.res.pitch2D.height)
        texel = device_bytes(r.res.pitch2D.devPtr + y * r.res.pitch2D.pitchInBytes + x * sizeof(float), sizeof(float), context);
      break;
    case CU_RESOURCE_TYPE_LINEAR:
      if (y == 0) texel = device_bytes(r.res.linear.devPtr + x * sizeof(float), sizeof(float), context);
      break;
    default: break;
  }
  if (texel == nullptr) return false;
  std::memcpy(&value, texel, sizeof value);
  return true;
}

bool surface_store_f32(CUsurfObject object, CUcontext context, uint64_t x_bytes, uint64_t y, float value) {
  const Surface* surface = g_surfaces.find(surface_key(object));
  if (surface == nullptr || surface->context != context) return false;
  std::byte* texel = array_bytes(surface->resource.res.array.hArray, x_bytes, y, 0, sizeof value, context);
  if (texel == nullptr) return false;
  std::memcpy(texel, &value, sizeof value);
  return true;
}

void release_textures_of(CUcontext context) {
  g_textures.remove_if([&](const Texture& t) { return t.context == context; });
  g_surfaces.remove_if([&](const Surface& s) { return s.context == context; });
}

}  // namespace rgpu::cuda_double

using namespace rgpu::cuda_double;

DOUBLE_EXPORT CUresult cuTexObjectCreate(CUtexObject* object, const CUDA_RESOURCE_DESC* resource,
                                         const CUDA_TEXTURE_DESC* texture, const CUDA_RESOURCE_VIEW_DESC* view) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (object == nullptr || resource == nullptr || texture == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_resource(*resource, context); r != CUDA_SUCCESS) return r;
  // A view only over arrays, as the driver's.
  if (view != nullptr && bits(resource->resType) != CU_RESOURCE_TYPE_ARRAY &&
      bits(resource->resType) != CU_RESOURCE_TYPE_MIPMAPPED_ARRAY)
    return CUDA_ERROR_INVALID_VALUE;
  Texture made{*resource, *texture, view ? *view : CUDA_RESOURCE_VIEW_DESC{}, view != nullptr, context};
  *object = reinterpret_cast<uintptr_t>(g_textures.add(made));
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuTexObjectDestroy(CUtexObject object) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (g_textures.find(texture_key(object)) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  g_textures.remove(texture_key(object));
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuTexObjectGetResourceDesc(CUDA_RESOURCE_DESC* resource, CUtexObject object) {
  auto lock = lock_driver();
  return describe(resource, g_textures.find(texture_key(object)), &Texture::resource);
}

DOUBLE_EXPORT CUresult cuTexObjectGetTextureDesc(CUDA_TEXTURE_DESC* descriptor, CUtexObject object) {
  auto lock = lock_driver();
  return describe(descriptor, g_textures.find(texture_key(object)), &Texture::texture);
}

DOUBLE_EXPORT CUresult cuTexObjectGetResourceViewDesc(CUDA_RESOURCE_VIEW_DESC* view, CUtexObject object) {
  auto lock = lock_driver();
  const Texture* texture = g_textures.find(texture_key(object));
  if (texture != nullptr && !texture->has_view) return CUDA_ERROR_INVALID_VALUE;
  return describe(view, texture, &Texture::view);
}

// Surfaces write to arrays made for it (CUDA_ARRAY3D_SURFACE_LDST).
DOUBLE_EXPORT CUresult cuSurfObjectCreate(CUsurfObject* object, const CUDA_RESOURCE_DESC* resource) {
  auto lock = lock_driver();
  CUcontext context;
  if (CUresult r = current_context(context); r != CUDA_SUCCESS) return r;
  if (object == nullptr || resource == nullptr || bits(resource->resType) != CU_RESOURCE_TYPE_ARRAY)
    return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_resource(*resource, context); r != CUDA_SUCCESS) return r;
  CUDA_ARRAY3D_DESCRIPTOR descriptor;
  array_descriptor(resource->res.array.hArray, descriptor);
  if (!(descriptor.Flags & CUDA_ARRAY3D_SURFACE_LDST)) return CUDA_ERROR_INVALID_VALUE;
  *object = reinterpret_cast<uintptr_t>(g_surfaces.add(Surface{*resource, context}));
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuSurfObjectDestroy(CUsurfObject object) {
  auto lock = lock_driver();
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (g_surfaces.find(surface_key(object)) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  g_surfaces.remove(surface_key(object));
  return CUDA_SUCCESS;
}

DOUBLE_EXPORT CUresult cuSurfObjectGetResourceDesc(CUDA_RESOURCE_DESC* resource, CUsurfObject object) {
  auto lock = lock_driver();
  return describe(resource, g_surfaces.find(surface_key(object)), &Surface::resource);
}
