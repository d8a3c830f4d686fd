"""The softmax classifier's loss in PyTorch, with the gradient written by hand (cs231n's softmax.py on tensors).

Fill in the blocks between START OF YOUR CODE and END OF YOUR CODE, then check them: run the check(...) cell
after each TODO in homework.ipynb, or from a shell

    python -m verify --target softmax_torch.py

The idioms you need: ``X @ W`` for ``X.dot(W)``, ``dim`` for ``axis``, ``torch.exp``/``torch.log``,
``t.max(dim=1, keepdim=True).values``, ``torch.arange(N)`` for fancy indexing, ``W.T``, ``torch.zeros_like(W)``.
No autograd here: the gradient is yours (homework.ipynb compares it with autograd's).
"""
import torch


def softmax_loss_naive(W, X, y, reg):
    """
    Softmax loss function, naive implementation (with loops)

    Inputs have dimension D, there are C classes, and we operate on minibatches
    of N examples.

    Inputs:
    - W: A tensor of shape (D, C) containing weights.
    - X: A tensor of shape (N, D) containing a minibatch of data.
    - y: A tensor of shape (N,) containing training labels; y[i] = c means
      that X[i] has label c, where 0 <= c < C.
    - reg: (float) regularization strength

    Returns a tuple of:
    - loss as a single number (a 0-d tensor or a float)
    - gradient with respect to weights W; a tensor of the same shape as W
    """
    # Initialize the loss and gradient to zero.
    loss = 0.0
    dW = torch.zeros_like(W)

    #############################################################################
    # TODO: Compute the softmax loss and its gradient using explicit loops.     #
    # Store the loss in loss and the gradient in dW. If you are not careful     #
    # here, it is easy to run into numeric instability. Don't forget the        #
    # regularization: the loss adds reg * sum(W * W).                           #
    #############################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    pass

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """
    Softmax loss function, vectorized version.

    Inputs and outputs are the same as softmax_loss_naive.
    """
    # Initialize the loss and gradient to zero.
    loss = 0.0
    dW = torch.zeros_like(W)

    #############################################################################
    # TODO: Compute the softmax loss and its gradient using no explicit loops.  #
    # Store the loss in loss and the gradient in dW. If you are not careful     #
    # here, it is easy to run into numeric instability. Don't forget the        #
    # regularization!                                                           #
    #############################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    pass

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    return loss, dW
