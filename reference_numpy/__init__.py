"""The article's NumPy code with cs231n's API: softmax loss, two-layer net, linear classifier, gradient checks.

The article: "Softmax及两层神经网络", a 2019 write-up of cs231n assignment 1, built on the cs231n notes
https://cs231n.github.io/linear-classify/, https://cs231n.github.io/optimization-2/ and
https://cs231n.github.io/neural-networks-case-study/.

NumPy only: this package never imports torch, so a student's notebook runs against it unchanged. Files, in reading
order: softmax.py (the loss, naive and vectorized), linear_classifier.py (LinearClassifier, Softmax), neural_net.py
(two_layer_loss, TwoLayerNet), gradient_check.py (numerical gradients), validation.py (input checks, the
divergence warning).
"""
