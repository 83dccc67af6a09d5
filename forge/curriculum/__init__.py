"""Curricula: Lightning callbacks that choose, epoch by epoch, which training rows are seen.

A curriculum hands the data module a pool of row indices and a batch size for each epoch
(`pool`), and decides at the end of each epoch whether to move on. Its position is callback
state, so it is saved in every checkpoint and a resumed run continues mid-curriculum.
"""
