"""Small torch networks shared by the importer tests, exposed through fixtures."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F


class PlainCNN(nn.Module):
    """conv/relu/maxpool/flatten/linear/dropout/softmax, as modules."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=(1, 1)), nn.ReLU(), nn.MaxPool2d(3, 1, 1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
            nn.Linear(32, 10), nn.Softmax(dim=1),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class BNNet(nn.Module):
    """conv → BN (with and without conv bias) and functional forms."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding="same")
        self.b2 = nn.BatchNorm2d(8, eps=1e-3)
        self.fc = nn.Linear(8 * 4 * 4, 6)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)), inplace=True)
        x = F.max_pool2d(x, 2)
        x = torch.relu(self.b2(self.c2(x)))
        x = x.view(x.size(0), -1)
        return torch.softmax(self.fc(x), dim=1)


class ResNetish(nn.Module):
    """Residual adds, AdaptiveAvgPool (divisible and identity), reshape variants."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.same = nn.AdaptiveAvgPool2d(2)  # identity on a 2x2 map
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        x = self.bn(self.stem(x)).relu()
        y = F.relu(self.a(x))
        y = self.b(y)
        y += x  # traced as an add
        x = torch.relu(y)
        z = torch.add(x, self.a(x))
        z = self.same(self.pool(z))
        z = z.reshape(z.shape[0], -1)
        return self.fc(z)


class PoolNet(nn.Module):
    """AvgPool2d with zero padding counted, global average pooling, torch.flatten."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.ap = nn.AvgPool2d(3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.gap(self.ap(F.relu(self.c(x))))
        return self.fc(torch.flatten(x, 1))


class LRNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 6, 5, stride=2, padding=2)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-3, beta=0.75, k=2.0)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(self.lrn(F.relu(self.c(x))), 2, 2)
        x = F.dropout(x, 0.5, self.training)
        return F.softmax(self.fc(x.view(-1, 6 * 4 * 4)), dim=-1)


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.act = nn.GELU()
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        x = torch.sigmoid(self.c(x))
        x = self.act(x)
        return self.fc(x.flatten(1))


# (module factory, input shape) for the equivalence tests
CASES = {
    "plain": (PlainCNN, (3, 16, 16)),
    "bn": (BNNet, (3, 8, 8)),
    "residual": (ResNetish, (3, 8, 8)),
    "pool": (PoolNet, (3, 12, 12)),
    "lrn": (LRNNet, (3, 16, 16)),
}


@pytest.fixture
def torch_cases():
    return CASES


@pytest.fixture
def unsupported_net():
    return Unsupported().eval()
