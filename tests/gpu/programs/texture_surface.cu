// Textures and surfaces the way real programs use them: CUDA arrays (2D, 3D, layered) filled with
// cudaMemcpy2DToArray and cudaMemcpy3D, texture objects over them and over pitched memory, point
// and linear filtering with normalized coordinates, a surface written by one kernel and read by
// another, copied back with cudaMemcpy2DFromArray. The output must be the same natively and
// through RGPU.
#include "check.cuh"
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

__global__ void read_2d(cudaTextureObject_t tex, float* out, int w, int h) {
  int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < w && y < h) out[y * w + x] = tex2D<float>(tex, x + 0.5f, y + 0.5f);
}

__global__ void sample_normalized(cudaTextureObject_t tex, const float2* at, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = tex2D<float>(tex, at[i].x, at[i].y);
}

__global__ void read_3d(cudaTextureObject_t tex, float* out, int w, int h, int d) {
  int x = threadIdx.x, y = blockIdx.x, z = blockIdx.y;
  if (x < w && y < h && z < d) out[(z * h + y) * w + x] = tex3D<float>(tex, x + 0.5f, y + 0.5f, z + 0.5f);
}

__global__ void read_layered(cudaTextureObject_t tex, float* out, int w, int h, int layers) {
  int x = threadIdx.x, y = blockIdx.x, layer = blockIdx.y;
  if (x < w && y < h && layer < layers) out[(layer * h + y) * w + x] = tex2DLayered<float>(tex, x + 0.5f, y + 0.5f, layer);
}

__global__ void write_surface(cudaSurfaceObject_t surf, int w, int h) {
  int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < w && y < h) surf2Dwrite(static_cast<float>(x * 1000 + y), surf, x * static_cast<int>(sizeof(float)), y);
}

__global__ void add_from_surface(cudaSurfaceObject_t surf, int w, int h) {
  int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x < w && y < h) {
    float v = surf2Dread<float>(surf, x * static_cast<int>(sizeof(float)), y);
    surf2Dwrite(v + 0.5f, surf, x * static_cast<int>(sizeof(float)), y);
  }
}

static float value_at(int x, int y, int z) { return static_cast<float>((x * 7 + y * 13 + z * 29) % 101) * 0.25f; }

static uint64_t checksum(const std::vector<float>& v) {
  uint64_t s = 1469598103934665603ull;
  for (float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    s = (s ^ bits) * 1099511628211ull;
  }
  return s;
}

static cudaTextureObject_t make_texture(const cudaResourceDesc& resource, cudaTextureFilterMode filter, bool normalized) {
  cudaTextureDesc desc{};
  desc.addressMode[0] = desc.addressMode[1] = desc.addressMode[2] = cudaAddressModeClamp;
  desc.filterMode = filter;
  desc.readMode = cudaReadModeElementType;
  desc.normalizedCoords = normalized;
  cudaTextureObject_t tex = 0;
  if (cudaCreateTextureObject(&tex, &resource, &desc, nullptr) != cudaSuccess) return 0;
  return tex;
}

int main() {
  CHECK(cudaSetDevice(0));
  bool all_ok = true;
  auto report = [&](const char* what, const std::vector<float>& got, const std::vector<float>& want) {
    const bool ok = got == want;
    all_ok = all_ok && ok;
    std::printf("%s: checksum=%016llx %s\n", what, static_cast<unsigned long long>(checksum(got)), ok ? "ok" : "mismatch");
  };
  const cudaChannelFormatDesc f32 = cudaCreateChannelDesc<float>();

  // 2D array, point sampling at texel centres.
  const int w = 61, h = 37;
  std::vector<float> image(w * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) image[y * w + x] = value_at(x, y, 0);
  cudaArray_t array2d;
  CHECK(cudaMallocArray(&array2d, &f32, w, h));
  CHECK(cudaMemcpy2DToArray(array2d, 0, 0, image.data(), w * sizeof(float), w * sizeof(float), h, cudaMemcpyHostToDevice));
  cudaResourceDesc resource{};
  resource.resType = cudaResourceTypeArray;
  resource.res.array.array = array2d;
  cudaTextureObject_t tex2d = make_texture(resource, cudaFilterModePoint, false);
  if (tex2d == 0) { std::printf("cudaCreateTextureObject (2D) failed\n"); return 1; }
  float* out;
  CHECK(cudaMalloc(&out, 64 * 64 * 8 * sizeof(float)));
  read_2d<<<dim3((w + 15) / 16, (h + 15) / 16), dim3(16, 16)>>>(tex2d, out, w, h);
  CHECK(cudaGetLastError());
  std::vector<float> got(w * h);
  CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report("2D array texture", got, image);
  cudaResourceDesc asked{};
  CHECK(cudaGetTextureObjectResourceDesc(&asked, tex2d));
  std::printf("resource desc: type=%d same array=%d\n", static_cast<int>(asked.resType), asked.res.array.array == array2d);

  // Normalized coordinates and linear filtering between texels (the GPU's filtering weights).
  cudaTextureObject_t linear = make_texture(resource, cudaFilterModeLinear, true);
  if (linear == 0) { std::printf("cudaCreateTextureObject (linear) failed\n"); return 1; }
  const int n = 16;
  std::vector<float2> at(n);
  for (int i = 0; i < n; ++i) at[i] = make_float2(0.03f + 0.061f * i, 0.97f - 0.057f * i);
  float2* at_device;
  CHECK(cudaMalloc(&at_device, n * sizeof(float2)));
  CHECK(cudaMemcpy(at_device, at.data(), n * sizeof(float2), cudaMemcpyHostToDevice));
  sample_normalized<<<1, n>>>(linear, at_device, out, n);
  CHECK(cudaGetLastError());
  std::vector<float> filtered(n);
  CHECK(cudaMemcpy(filtered.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost));
  std::printf("linear filtering:");
  for (float v : filtered) std::printf(" %.5f", v);
  std::printf("\n");

  // 3D array through cudaMemcpy3D.
  const int w3 = 16, h3 = 8, d3 = 5;
  std::vector<float> volume(w3 * h3 * d3);
  for (int z = 0; z < d3; ++z)
    for (int y = 0; y < h3; ++y)
      for (int x = 0; x < w3; ++x) volume[(z * h3 + y) * w3 + x] = value_at(x, y, z);
  cudaArray_t array3d;
  CHECK(cudaMalloc3DArray(&array3d, &f32, make_cudaExtent(w3, h3, d3)));
  cudaMemcpy3DParms copy{};
  copy.srcPtr = make_cudaPitchedPtr(volume.data(), w3 * sizeof(float), w3, h3);
  copy.dstArray = array3d;
  copy.extent = make_cudaExtent(w3, h3, d3);
  copy.kind = cudaMemcpyHostToDevice;
  CHECK(cudaMemcpy3D(&copy));
  resource.res.array.array = array3d;
  cudaTextureObject_t tex3d = make_texture(resource, cudaFilterModePoint, false);
  if (tex3d == 0) { std::printf("cudaCreateTextureObject (3D) failed\n"); return 1; }
  read_3d<<<dim3(h3, d3), w3>>>(tex3d, out, w3, h3, d3);
  CHECK(cudaGetLastError());
  got.assign(volume.size(), 0);
  CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report("3D array texture", got, volume);
  // The volume back out of the array, slice 2 only.
  std::vector<float> slice(w3 * h3, -1.0f);
  cudaMemcpy3DParms back{};
  back.srcArray = array3d;
  back.srcPos = make_cudaPos(0, 0, 2);
  back.dstPtr = make_cudaPitchedPtr(slice.data(), w3 * sizeof(float), w3, h3);
  back.extent = make_cudaExtent(w3, h3, 1);
  back.kind = cudaMemcpyDeviceToHost;
  CHECK(cudaMemcpy3D(&back));
  report("3D array slice back", slice, std::vector<float>(volume.begin() + 2 * w3 * h3, volume.begin() + 3 * w3 * h3));

  // A layered 2D array: three layers, read with tex2DLayered.
  const int layers = 3;
  cudaArray_t layered;
  CHECK(cudaMalloc3DArray(&layered, &f32, make_cudaExtent(w3, h3, layers), cudaArrayLayered));
  copy.dstArray = layered;
  copy.extent = make_cudaExtent(w3, h3, layers);
  CHECK(cudaMemcpy3D(&copy));
  resource.res.array.array = layered;
  cudaTextureObject_t tex_layered = make_texture(resource, cudaFilterModePoint, false);
  if (tex_layered == 0) { std::printf("cudaCreateTextureObject (layered) failed\n"); return 1; }
  read_layered<<<dim3(h3, layers), w3>>>(tex_layered, out, w3, h3, layers);
  CHECK(cudaGetLastError());
  got.assign(w3 * h3 * layers, 0);
  CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report("layered array texture", got, std::vector<float>(volume.begin(), volume.begin() + w3 * h3 * layers));

  // Pitched linear memory as a 2D texture.
  float* pitched;
  size_t pitch = 0;
  CHECK(cudaMallocPitch(&pitched, &pitch, w * sizeof(float), h));
  CHECK(cudaMemcpy2D(pitched, pitch, image.data(), w * sizeof(float), w * sizeof(float), h, cudaMemcpyHostToDevice));
  cudaResourceDesc pitch_resource{};
  pitch_resource.resType = cudaResourceTypePitch2D;
  pitch_resource.res.pitch2D.devPtr = pitched;
  pitch_resource.res.pitch2D.desc = f32;
  pitch_resource.res.pitch2D.width = w;
  pitch_resource.res.pitch2D.height = h;
  pitch_resource.res.pitch2D.pitchInBytes = pitch;
  cudaTextureObject_t tex_pitched = make_texture(pitch_resource, cudaFilterModePoint, false);
  if (tex_pitched == 0) { std::printf("cudaCreateTextureObject (pitch2D) failed\n"); return 1; }
  read_2d<<<dim3((w + 15) / 16, (h + 15) / 16), dim3(16, 16)>>>(tex_pitched, out, w, h);
  CHECK(cudaGetLastError());
  got.assign(w * h, 0);
  CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
  report("pitch-linear texture", got, image);

  // A surface: written by one kernel, read and rewritten by another, copied back.
  cudaArray_t surface_array;
  CHECK(cudaMallocArray(&surface_array, &f32, w, h, cudaArraySurfaceLoadStore));
  cudaResourceDesc surface_resource{};
  surface_resource.resType = cudaResourceTypeArray;
  surface_resource.res.array.array = surface_array;
  cudaSurfaceObject_t surf;
  CHECK(cudaCreateSurfaceObject(&surf, &surface_resource));
  write_surface<<<dim3((w + 15) / 16, (h + 15) / 16), dim3(16, 16)>>>(surf, w, h);
  add_from_surface<<<dim3((w + 15) / 16, (h + 15) / 16), dim3(16, 16)>>>(surf, w, h);
  CHECK(cudaGetLastError());
  std::vector<float> surface_back(w * h), surface_want(w * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) surface_want[y * w + x] = static_cast<float>(x * 1000 + y) + 0.5f;
  CHECK(cudaMemcpy2DFromArray(surface_back.data(), w * sizeof(float), surface_array, 0, 0, w * sizeof(float), h,
                              cudaMemcpyDeviceToHost));
  report("surface write then read", surface_back, surface_want);

  CHECK(cudaDestroySurfaceObject(surf));
  for (cudaTextureObject_t t : {tex2d, linear, tex3d, tex_layered, tex_pitched}) CHECK(cudaDestroyTextureObject(t));
  for (cudaArray_t a : {array2d, array3d, layered, surface_array}) CHECK(cudaFreeArray(a));
  CHECK(cudaFree(pitched));
  CHECK(cudaFree(at_device));
  CHECK(cudaFree(out));
  std::printf("%s\n", all_ok ? "ok" : "mismatch");
  return 0;
}
