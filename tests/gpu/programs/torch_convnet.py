# A convnet training step with cuDNN: channels_last, fp16 autocast with a gradient scaler,
# cudnn.benchmark; prints rounded losses. `--bench N` prints the median step time.
import torch
import torch.nn as nn
import torch.nn.functional as F
from step_timer import bench_requested, print_median_step

torch.manual_seed(0)
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


model = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 64, 1), block(64, 128, 2), block(128, 128, 1),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).to(dev).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scaler = torch.amp.GradScaler("cuda")
images = torch.randn(64, 3, 32, 32, device=dev).to(memory_format=torch.channels_last)
labels = torch.randint(0, 10, (64,), device=dev)


def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = F.cross_entropy(model(images), labels)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss


if bench_requested():
    print_median_step("convnet", step)
else:
    print("cudnn", torch.backends.cudnn.is_available(), torch.backends.cudnn.version() is not None)
    first = step().item()
    for _ in range(19):
        loss = step()
    print("first loss", f"{first:.1f}")
    print("learned", loss.item() < first)
