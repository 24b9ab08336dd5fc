# One cuBLAS SGEMM through CuPy, small enough to read its driver calls in a debug log.
import cupy as cp

a = cp.ones((64, 64), dtype=cp.float32)
b = cp.full((64, 64), 2, dtype=cp.float32)
print("gemm", float((a @ b)[0, 0]))
