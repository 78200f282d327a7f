"""
Helpers for the two-stage detector kit: data, training, evaluation, pictures.
"""
import random

import numpy as np
import torch

__all__ = ["hello_helper", "reset_seed"]


def hello_helper():
    print("Hello from a4_helper.py!")


def reset_seed(number: int = 0):
    """Seed Python, NumPy and PyTorch (all devices) for reproducible runs."""
    random.seed(number)
    np.random.seed(number)
    torch.manual_seed(number)
