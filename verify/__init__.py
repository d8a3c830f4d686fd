"""The verification tool: is someone's cs231n code (or this project's) right? ``python -m verify --help``.

Files in reading order:

    cases.py        the fixed float64 cases of every kind (NumPy only)
    kinds.py        cs231n's APIs of every course year, detected by name and signature
    torch_kinds.py  the PyTorch kinds (the homework kit's): two_layer_loss, autograd.Function, train, LightningModule
    compare.py      relative error, float64 conversion and the one row type of every table (NumPy only)
    job.py          the wire format between parent and child: the job's case keys, argv, results, events
    loading.py      importing a student's file as their course environment would; one-line import errors
    calls.py        how each kind of target is called on a case: its outputs, finite differences of its own loss
    _child.py       the child process: runs the student's code on the cases, records outputs and finite differences
    torch_child.py  the child's side of the PyTorch loss kinds: outputs, backward, autograd of a Function's forward
    torch_loops.py  train() and a LightningModule's step run with a spy in place of the loss and the optimizer
    sandbox.py      starts the children with limits (time, memory, output) and says how each ended
    references.py   the course's definitions, differentiated by torch.autograd (float64)
    hints.py        mistake models: which common mistake reproduces the wrong numbers
    verdict.py      what the rows mean: generic and shared hints, a half-finished template's one line, PASS/FAIL
    checks.py       the two questions per target (course definition, own loss), conventions, judge
    torch_checks.py the verdict on the PyTorch kinds: the course, the own forward, every update of train and Lightning
    spy.py          train() and predict() in the child: their cases, and a spy in place of self.loss
    train_checks.py train(): batches, the update, the learning-rate schedule, the histories, judged and hinted
    predict_checks.py  predict(): the argmax class on random weights, and the common mistakes
    report.py       one target's text and JSON views
    assignment.py   the assignment spec: expected targets, points, visibility, seed (shipped specs: assignments/)
    classroom.py    a folder of submissions at once, in parallel: layouts, copies, MISSING rows, points
    gradebook.py    a class's CSV, gradebook, feedback files and Gradescope results.json
    autograder.py   Gradescope's autograder zip, and the grading run inside it
    self_check.py   the project's own implementations against autograd (python -m verify without a target)
    cli.py          python -m verify (also python -m train verify)
    notebook.py     check(): the same checks from a notebook or a Python session, with an HTML table
    _supervisor.py  the process between verify and each child: captures its output, kills all it started
    homework_kit.py python -m verify homework DIR: writes the PyTorch homework kit (homework/, package data)

    from verify import check      # check(softmax_loss_vectorized), check("cs231n/classifiers/fc_net.py")

Importing this package imports nothing heavy (the child process uses it without torch); check() imports torch on
its first call.
"""
__all__ = ["check"]


def __getattr__(name):
    if name == "check":
        from verify.notebook import check

        return check
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
