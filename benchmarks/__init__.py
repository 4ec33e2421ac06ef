"""Reproducible speed, memory and accuracy measurements, printed as tables (`make bench`)."""
