"""Importing this package registers every attribution method."""

from raysattr.attribution.methods import attention, conductance, gradients, integrated, ism

__all__ = ["attention", "conductance", "gradients", "integrated", "ism"]
