"""The two-layer net in PyTorch, three ways: the gradients by hand (two_layer_loss), the same formulas as the
backward of an autograd.Function (TwoLayerLoss), and a training loop with torch.optim.SGD (train).

The net is cs231n's: affine - ReLU - affine - softmax, with parameters W1 (D, H), b1 (H,), W2 (H, C), b2 (C,) and
the loss mean(-log P[y]) + reg * (sum(W1 * W1) + sum(W2 * W2)). Fill in the blocks between START OF YOUR CODE and
END OF YOUR CODE, then check them: the check(...) cells of homework.ipynb, or from a shell

    python -m verify --target two_layer_torch.py
"""
import torch


def two_layer_loss(X, y, W1, b1, W2, b2, reg):
    """
    Compute the loss and gradients for a two layer fully connected neural network.

    Inputs:
    - X: Input data of shape (N, D). Each X[i] is a training sample.
    - y: Vector of training labels of shape (N,). y[i] is the label for X[i], and each y[i] is an integer in the
      range 0 <= y[i] < C. This parameter is optional; if it is None then we only return scores.
    - W1: First layer weights, of shape (D, H); b1: first layer biases, of shape (H,)
    - W2: Second layer weights, of shape (H, C); b2: second layer biases, of shape (C,)
    - reg: Regularization strength.

    Returns:
    If y is None, return a tensor scores of shape (N, C) where scores[i, c] is the score for class c on input X[i].

    If y is not None, instead return a tuple of:
    - loss: Loss (data loss and regularization loss) for this batch of training samples.
    - grads: Dictionary mapping parameter names ('W1', 'b1', 'W2', 'b2') to gradients of those parameters with
      respect to the loss function; has the same keys as self.params.
    """
    # Compute the forward pass
    scores = None
    #############################################################################
    # TODO: Perform the forward pass, computing the class scores for the input. #
    # Store the result in the scores variable, which should be a tensor of      #
    # shape (N, C). The ReLU is torch.clamp_min(x, 0) (or torch.relu).          #
    #############################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    pass

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    # If the targets are not given then jump out, we're done
    if y is None:
        return scores

    # Compute the loss
    loss = None
    #############################################################################
    # TODO: Finish the forward pass, and compute the loss. This should include  #
    # both the data loss and L2 regularization for W1 and W2. Store the result  #
    # in the variable loss, which should be a scalar. Use the Softmax           #
    # classifier loss.                                                          #
    #############################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    pass

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    # Backward pass: compute gradients
    grads = {}
    #############################################################################
    # TODO: Compute the backward pass, computing the derivatives of the weights #
    # and biases. Store the results in the grads dictionary. For example,       #
    # grads['W1'] should store the gradient on W1, and be a tensor of same size #
    #############################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    pass

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    return loss, grads


class TwoLayerLoss(torch.autograd.Function):
    """TwoLayerLoss.apply(X, y, W1, b1, W2, b2, reg) -> loss; loss.backward() fills W1.grad, b1.grad, W2.grad and
    b2.grad with the gradients your backward computes. Anything listening to autograd (an optimizer, Lightning)
    then uses your formulas."""

    @staticmethod
    def forward(ctx, X, y, W1, b1, W2, b2, reg):
        loss = None
        #########################################################################
        # TODO: Compute the loss, as two_layer_loss does, and save what backward #
        # needs: tensors with ctx.save_for_backward(...), numbers such as reg as #
        # attributes of ctx (ctx.reg = reg). Store the loss (a 0-d tensor) in    #
        # loss.                                                                  #
        #########################################################################
        # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        pass

        # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        dW1 = db1 = dW2 = db2 = None
        #########################################################################
        # TODO: The gradients of the loss with respect to W1, b1, W2 and b2,     #
        # from what forward saved (ctx.saved_tensors, ctx.reg). grad_loss is the #
        # upstream gradient d(final)/d(loss) (1.0 for loss.backward()): by the   #
        # chain rule, multiply every gradient by it.                             #
        #########################################################################
        # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        pass

        # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****
        return None, None, dW1, db1, dW2, db2, None  # one gradient per input of forward: X, y and reg get none


def train(X, y, params, batches, learning_rate, reg):
    """
    Train the net with stochastic gradient descent, torch.optim.SGD doing the update.

    Inputs:
    - X: (N, D) training data; y: (N,) training labels
    - params: dict of the parameters 'W1', 'b1', 'W2', 'b2', leaf tensors with requires_grad=True; they are
      updated in place
    - batches: (num_iters, batch_size) tensor of row indices, one minibatch per row (drawn with replacement)
    - learning_rate: the SGD step size
    - reg: regularization strength

    Returns loss_history: a list of floats, the loss of each minibatch (before its update).
    """
    optimizer = torch.optim.SGD(params.values(), lr=learning_rate)
    loss_history = []
    for indices in batches:
        X_batch, y_batch = X[indices], y[indices]  # (batch_size, D), (batch_size,)

        loss = None
        #########################################################################
        # TODO: One step of SGD on the minibatch: compute the loss with          #
        # TwoLayerLoss.apply, clear the gradients of the last step, backpropagate #
        # and let the optimizer update the parameters. Store the loss in loss.  #
        #########################################################################
        # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        pass

        # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

        loss_history.append(loss.item())
    return loss_history
