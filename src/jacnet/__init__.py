"""jacnet: backpropagation you can see and check.

Layers and losses run the closed-form backward passes that the lecture "Backpropagation and
Jacobian Matrices: Expanded Jacobians in Deep Learning" derives, materialise their expanded
Jacobians from the per-entry derivatives, and prove the two agree with finite differences.
"""

from jacnet.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    NonFiniteGuard,
)
from jacnet.cnn import build_cnn
from jacnet.conv import Conv1D, Conv2D
from jacnet.dropout import Dropout
from jacnet.errors import (
    ForwardNotCalledError,
    JacnetError,
    JacnetTypeError,
    JacnetValueError,
    JacnetWarning,
    JacobianTooLargeError,
    ModelFileError,
    NonFiniteError,
    ShapeError,
)
from jacnet.io import Checkpoint, load, load_checkpoint, save
from jacnet.jacobian import (
    GradientCheck,
    GradientReport,
    check_gradients,
    expanded_jacobian,
    numerical_jacobian,
)
from jacnet.layers import Affine, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from jacnet.losses import (
    BinaryCrossEntropy,
    CategoricalCrossEntropy,
    Loss,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)
from jacnet.model import ACTIVATIONS, Sequential, build_mlp
from jacnet.normalization import BatchNorm, LayerNorm
from jacnet.optim import SGD, Adam, CosineDecay, Optimizer, StepDecay
from jacnet.plots import plot_history, plot_jacobian
from jacnet.pooling import (
    AvgPool1D,
    AvgPool2D,
    Flatten,
    GlobalAvgPool,
    MaxPool1D,
    MaxPool2D,
    Unflatten,
)
from jacnet.threads import get_num_threads, set_num_threads
from jacnet.train import History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "SGD",
    "Adam",
    "Affine",
    "AvgPool1D",
    "AvgPool2D",
    "BatchNorm",
    "BinaryCrossEntropy",
    "Callback",
    "CategoricalCrossEntropy",
    "Checkpoint",
    "Conv1D",
    "Conv2D",
    "CosineDecay",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "ForwardNotCalledError",
    "GlobalAvgPool",
    "GradientCheck",
    "GradientReport",
    "History",
    "JacnetError",
    "JacnetTypeError",
    "JacnetValueError",
    "JacnetWarning",
    "JacobianTooLargeError",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LearningRateScheduler",
    "Loss",
    "MaxPool1D",
    "MaxPool2D",
    "MeanSquaredError",
    "ModelCheckpoint",
    "ModelFileError",
    "NonFiniteError",
    "NonFiniteGuard",
    "Optimizer",
    "ReLU",
    "Sequential",
    "ShapeError",
    "Sigmoid",
    "SigmoidBinaryCrossEntropy",
    "Softmax",
    "SoftmaxCrossEntropy",
    "StepDecay",
    "Tanh",
    "Unflatten",
    "__version__",
    "build_cnn",
    "build_mlp",
    "check_gradients",
    "evaluate",
    "expanded_jacobian",
    "fit",
    "get_num_threads",
    "load",
    "load_checkpoint",
    "numerical_jacobian",
    "plot_history",
    "plot_jacobian",
    "save",
    "set_num_threads",
]
