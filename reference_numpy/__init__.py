"""The article's NumPy code with cs231n's API: softmax loss, two-layer net, linear classifier, gradient checks.

NumPy only: this package never imports torch, so a student's notebook runs against it unchanged.
"""
