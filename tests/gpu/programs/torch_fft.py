# torch.fft (cuFFT): 1-D, real 2-D and batched transforms compared with NumPy; prints rounded errors.
import numpy as np
import torch

torch.manual_seed(0)
dev = torch.device("cuda")
x = torch.randn(4096, dtype=torch.float64)
a = torch.fft.fft(x.to(dev)).cpu().numpy()
print("fft1d", np.allclose(a, np.fft.fft(x.numpy()), atol=1e-8))
img = torch.randn(64, 96)
b = torch.fft.rfft2(img.to(dev)).cpu().numpy()
print("rfft2", np.allclose(b, np.fft.rfft2(img.numpy()), atol=1e-3))
batch = torch.randn(16, 1000, dtype=torch.complex64)
c = torch.fft.ifft(torch.fft.fft(batch.to(dev))).cpu()
print("roundtrip", torch.allclose(c, batch, atol=1e-4))
print("energy", f"{torch.fft.fft(x.to(dev)).abs().pow(2).sum().item() / 4096:.3f}")
