"""A small CNN on scikit-learn's 8x8 digits, written as a user would with the trainer API.

``secagg client DIR --name c1 --trainer clients.models.digits_cnn:trainer`` trains it with
DP-SGD (epsilon 3 over the deployment's rounds). Its BatchNorm is replaced by GroupNorm
under DP (Opacus cannot train BatchNorm privately), so the model vector has 1,914 values:
``python -m clients.custom_trainer clients.models.digits_cnn:trainer`` prints them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from clients.custom_trainer import ClientInfo, CustomTrainer, DPOptions
from clients.data import load_federation, scale_pixels

Loader = DataLoader[tuple[torch.Tensor, ...]]


def cnn() -> nn.Module:
    """8x8 image -> two 3x3 convolutions with pooling -> 10 classes."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )  # fmt: skip


def loaders(client: ClientInfo) -> tuple[Loader, Loader]:
    """This client's share of the digits: 80% to train, 20% to validate locally."""
    share = load_federation(clients=len(client.clients), seed=0).clients[client.index]
    x, y = torch.from_numpy(scale_pixels(share.x_train)), torch.from_numpy(share.y_train)
    cut = len(y) // 5
    train, validation = TensorDataset(x[cut:], y[cut:]), TensorDataset(x[:cut], y[:cut])
    return DataLoader(train, batch_size=64, shuffle=True), DataLoader(validation, batch_size=256)


def accuracy(model: nn.Module, validation: Loader) -> dict[str, float]:
    """Validation accuracy (logged on the client, never sent)."""
    right = total = 0
    for x, y in validation:
        right += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return {"accuracy": right / total}


trainer = CustomTrainer(
    model=cnn,
    data=loaders,
    optimizer=lambda params: torch.optim.SGD(params, lr=2.0),
    loss=nn.CrossEntropyLoss(),
    local_epochs=1,
    dp=DPOptions(target_epsilon=3.0, max_grad_norm=1.0, accountant="rdp"),
    metrics=accuracy,
)
