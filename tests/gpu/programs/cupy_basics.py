# CuPy through RGPU: array math, a RawKernel and a cuBLAS matmul; prints rounded results so that
# the run through RGPU can be compared with the native run.
import cupy as cp

a = cp.arange(1 << 20, dtype=cp.float32)
b = cp.sin(a) * 2 + 1
print("device", cp.cuda.runtime.getDeviceProperties(0)["name"].decode())
print("sum", f"{float(b.sum()):.6e}", "max", f"{float(b.max()):.6f}")

saxpy = cp.RawKernel(r'''
extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}''', "saxpy")
x = cp.linspace(0, 1, 4096, dtype=cp.float32)
y = cp.ones(4096, dtype=cp.float32)
saxpy((16,), (256,), (cp.float32(3.0), x, y, cp.int32(4096)))
print("saxpy", f"{float(y.sum()):.6f}", f"{float(y[-1]):.6f}")

rng = cp.random.default_rng(1234)
m = rng.standard_normal((512, 512), dtype=cp.float32)
n = rng.standard_normal((512, 512), dtype=cp.float32)
p = m @ n
print("matmul", f"{float(cp.abs(p).sum()):.4e}", f"{float(p[3, 7]):.4f}")
print("host roundtrip", cp.asnumpy(b[:4]).round(4).tolist())
