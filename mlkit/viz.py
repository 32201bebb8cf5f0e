"""Every figure the chapters show, one function per figure kind (matplotlib, seaborn).

Functions take what :mod:`mlkit.interpret`, the learners or :mod:`mlkit.data` return and only
draw it: no training and no computing of explanations here. Each returns the matplotlib
``Figure`` so that a chapter can save or adjust it. Sections are grouped by the chapter that
added them.
"""

from __future__ import annotations
