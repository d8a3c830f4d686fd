"""The two-layer net as a LightningModule: Lightning runs the loop your train() wrote (zero_grad, backward, step).

You write the two methods Lightning cannot guess: training_step (the loss of one batch) and configure_optimizers
(which optimizer, which learning rate). The loss is your TwoLayerLoss from two_layer_torch.py. Check them with the
check(...) cell of homework.ipynb, or from a shell

    python -m verify --target lit_two_layer.py
"""
import lightning as L
import torch
from torch import nn

from two_layer_torch import TwoLayerLoss


class LitTwoLayerNet(L.LightningModule):
    """affine - ReLU - affine - softmax with cs231n's parameters W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)."""

    def __init__(self, input_size, hidden_size, output_size, std=1e-4, learning_rate=1e-1, reg=0.0):
        super().__init__()
        self.W1 = nn.Parameter(std * torch.randn(input_size, hidden_size))
        self.b1 = nn.Parameter(torch.zeros(hidden_size))
        self.W2 = nn.Parameter(std * torch.randn(hidden_size, output_size))
        self.b2 = nn.Parameter(torch.zeros(output_size))
        self.learning_rate, self.reg = learning_rate, reg

    def forward(self, X):
        """Scores (N, C) of X (N, D)."""
        return torch.clamp_min(X @ self.W1 + self.b1, 0) @ self.W2 + self.b2

    def training_step(self, batch, batch_idx):
        X, y = batch  # (B, D), (B,)
        loss = None
        #########################################################################
        # TODO: The loss of the batch with TwoLayerLoss.apply (reg self.reg).    #
        # Log it with self.log("train_loss", loss) and return it: Lightning then #
        # calls zero_grad, backward and the optimizer's step for you.            #
        #########################################################################
        # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        pass

        # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****
        return loss

    def validation_step(self, batch, batch_idx):
        X, y = batch
        self.log("val_acc", (self(X).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        optimizer = None
        #########################################################################
        # TODO: Return torch.optim.SGD over the module's parameters, with the    #
        # learning rate self.learning_rate.                                      #
        #########################################################################
        # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        pass

        # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****
        return optimizer
