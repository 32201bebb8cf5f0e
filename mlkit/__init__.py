"""mlkit: the helper package of the book *Opening the box: meta-learning and
how to explain it*.

One module per idea, named as the book names it: ``data`` (tasks, episodes,
pairs), ``nets``, ``maml``, ``siamese``, ``protonet``, ``checkpoints``,
``interpret``, ``viz``, ``widgets``, ``exercises``. Data flows one way: data ->
learners -> checkpoints -> interpret -> viz/widgets -> chapters.
"""

__version__ = "0.1.0"
