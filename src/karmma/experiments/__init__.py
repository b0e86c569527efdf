"""Experiments that train and evaluate several models: the dropout study."""
